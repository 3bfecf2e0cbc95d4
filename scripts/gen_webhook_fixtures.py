#!/usr/bin/env python3
"""Generate crates/ivory-sdk/tests/fixtures/webhooks/official_cases.json.

Every case is signed, and where the library can, also verified, by the upstream's own
library from PyPI, so the Rust verifier is checked against code it shares nothing with:

    python3 -m venv /tmp/whvenv
    /tmp/whvenv/bin/pip install stripe==16.1.0 standardwebhooks==1.1.0 \
        hubspot-api-client==12.0.0 pyairtable==3.5.1
    /tmp/whvenv/bin/python scripts/gen_webhook_fixtures.py

Each case records its `source` (which library call produced the signature) and `official`
(what the official library's own verifier answered at the case's `now`, which is pinned by
patching the library's clock). `expect` is what our verifier must answer: it differs from
`official` only where our policy is deliberately stricter (future timestamps, SPEC §4).

All secrets are obviously fake test values.
"""

import base64
import datetime as _dt
import hashlib
import hmac
import importlib.metadata as md
import json
import pathlib
import sys

import stripe
import stripe._webhook as stripe_webhook
import standardwebhooks
import standardwebhooks.webhooks as sw_module
from hubspot.utils import signature as hubspot_signature
from pyairtable.models.webhook import WebhookNotification

OUT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "crates/ivory-sdk/tests/fixtures/webhooks/official_cases.json"
)

NOW = 1_700_000_000  # 2023-11-14T22:13:20Z
TOLERANCE = 300

STRIPE_SECRET = "whsec_test_ivory_fake_secret_0000"
STRIPE_OLD_SECRET = "whsec_test_ivory_fake_secret_old0"
STRIPE_WRONG_SECRET = "whsec_test_ivory_fake_secret_9999"
SW_SECRET = "whsec_ivoryFakeTestSecret0000000000000"
SW_OLD_SECRET = "whsec_ivoryFakeOldTestSecret0000000000"
HUBSPOT_SECRET = "ivory-fake-hubspot-client-secret-0000"
AIRTABLE_SECRET = "ivoryFakeAirtableMacSecret000000"


# --- pinned clocks -------------------------------------------------------------------------
class _FixedTime:
    def __init__(self, now):
        self.now = now

    def time(self):
        return float(self.now)


def _fixed_datetime(now):
    class FixedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime.fromtimestamp(now, tz=tz or _dt.timezone.utc)

    return FixedDatetime


def official(fn, now):
    """Run an official verifier with its clock pinned to `now`; 'accepted' or 'rejected: …'."""
    saved = (stripe_webhook.time, sw_module.datetime, hubspot_signature.datetime)
    stripe_webhook.time = _FixedTime(now)
    sw_module.datetime = _fixed_datetime(now)
    hubspot_signature.datetime = _fixed_datetime(now)
    try:
        result = fn()
        if result is False:
            return "rejected: is_valid returned False"
        return "accepted"
    except Exception as error:  # the libraries raise their own error types
        return f"rejected: {type(error).__name__}: {error}"
    finally:
        stripe_webhook.time, sw_module.datetime, hubspot_signature.datetime = saved


CASES = []


def case(name, scheme, secret, headers, body, expect, source, official_answer, now=NOW, method="POST", url=None):
    CASES.append(
        {
            "name": name,
            "scheme": scheme,
            "source": source,
            "official": official_answer,
            "expect": expect,
            "secret": secret,
            "method": method,
            "url": url,
            "headers": headers,
            "body": body,
            "now": now,
            "tolerance": TOLERANCE,
        }
    )


# --- Stripe ----------------------------------------------------------------------------------
STRIPE_BODY = json.dumps(
    {
        "id": "evt_test_ivory_0001",
        "object": "event",
        "type": "invoice.payment_failed",
        "data": {"object": {"id": "in_test_ivory_0001", "object": "invoice", "customer_name": "Zoë Ærø 🧾"}},
    },
    ensure_ascii=False,
)
Sig = stripe.WebhookSignature


def stripe_case(name, header, expect, source, now=NOW, body=STRIPE_BODY):
    verdict = official(lambda: Sig.verify_header(body, header, STRIPE_SECRET, tolerance=TOLERANCE), now)
    case(name, "stripe", STRIPE_SECRET, [["Stripe-Signature", header]], body, expect, source, verdict, now=now)


stripe_case(
    "stripe_valid",
    Sig.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, timestamp=NOW),
    "valid",
    "stripe 16.1.0 WebhookSignature.generate_signature_header",
)
old = Sig._compute_signature(f"{NOW}.{STRIPE_BODY}", STRIPE_OLD_SECRET)
new = Sig._compute_signature(f"{NOW}.{STRIPE_BODY}", STRIPE_SECRET)
stripe_case(
    "stripe_rolled_secret_second_v1_matches",
    f"t={NOW},v1={old},v1={new},v0={old}",
    "valid",
    "stripe 16.1.0 WebhookSignature._compute_signature with the old and the current secret",
)
stripe_case(
    "stripe_v0_only",
    f"t={NOW},v0={new}",
    "NoSupportedSignature",
    "stripe 16.1.0 WebhookSignature._compute_signature, sent as v0",
)
stripe_case(
    "stripe_wrong_secret",
    Sig.generate_signature_header(STRIPE_BODY, STRIPE_WRONG_SECRET, timestamp=NOW),
    "NoSignatureMatched",
    "stripe 16.1.0 WebhookSignature.generate_signature_header with another secret",
)
stripe_case(
    "stripe_stale",
    Sig.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, timestamp=NOW - TOLERANCE - 1),
    "TimestampTooOld",
    "stripe 16.1.0 WebhookSignature.generate_signature_header at now - 301 s",
)
stripe_case(
    "stripe_boundary_age_equals_tolerance",
    Sig.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, timestamp=NOW - TOLERANCE),
    "valid",
    "stripe 16.1.0 WebhookSignature.generate_signature_header at now - 300 s",
)
stripe_case(
    "stripe_future",
    Sig.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, timestamp=NOW + TOLERANCE + 1),
    "TimestampInFuture",
    "stripe 16.1.0 WebhookSignature.generate_signature_header at now + 301 s "
    "(the official library accepts future timestamps; our policy refuses them)",
)
stripe_case(
    "stripe_tampered_body",
    Sig.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, timestamp=NOW),
    "NoSignatureMatched",
    "stripe 16.1.0 WebhookSignature.generate_signature_header over the original body; "
    "one byte of the sent body changed",
    body=STRIPE_BODY.replace("0001", "0002", 1),
)

# --- Standard Webhooks -----------------------------------------------------------------------
SW_BODY = json.dumps({"type": "invoice.paid", "timestamp": "2023-11-14T22:13:20Z", "data": {"id": "inv_ivory_1", "note": "naïve café"}}, ensure_ascii=False)
MSG_ID = "msg_ivory_fake_0001"
wh = standardwebhooks.Webhook(SW_SECRET)
wh_old = standardwebhooks.Webhook(SW_OLD_SECRET)


def at(seconds):
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


def sw_case(name, timestamp, signature, expect, source, now=NOW, body=SW_BODY, msg_id=MSG_ID):
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    verdict = official(lambda: wh.verify(body, headers, json_parse=False) or True, now)
    case(name, "standard-webhooks", SW_SECRET, [[k, v] for k, v in headers.items()], body, expect, source, verdict, now=now)


sw_case("standard_valid", NOW, wh.sign(MSG_ID, at(NOW), SW_BODY), "valid", "standardwebhooks 1.1.0 Webhook.sign")
sw_case(
    "standard_rotation_second_signature_matches",
    NOW,
    f"{wh_old.sign(MSG_ID, at(NOW), SW_BODY)} {wh.sign(MSG_ID, at(NOW), SW_BODY)}",
    "valid",
    "standardwebhooks 1.1.0 Webhook.sign with the old and the current secret",
)
sw_case(
    "standard_wrong_secret",
    NOW,
    wh_old.sign(MSG_ID, at(NOW), SW_BODY),
    "NoSignatureMatched",
    "standardwebhooks 1.1.0 Webhook.sign with another secret",
)
sw_case(
    "standard_stale",
    NOW - TOLERANCE - 1,
    wh.sign(MSG_ID, at(NOW - TOLERANCE - 1), SW_BODY),
    "TimestampTooOld",
    "standardwebhooks 1.1.0 Webhook.sign at now - 301 s",
)
sw_case(
    "standard_future",
    NOW + TOLERANCE + 1,
    wh.sign(MSG_ID, at(NOW + TOLERANCE + 1), SW_BODY),
    "TimestampInFuture",
    "standardwebhooks 1.1.0 Webhook.sign at now + 301 s",
)
sw_case(
    "standard_tampered_body",
    NOW,
    wh.sign(MSG_ID, at(NOW), SW_BODY),
    "NoSignatureMatched",
    "standardwebhooks 1.1.0 Webhook.sign over the original body; one byte of the sent body changed",
    body=SW_BODY.replace("inv_ivory_1", "inv_ivory_2"),
)

# --- HubSpot v3 ------------------------------------------------------------------------------
HUBSPOT_BODY = json.dumps(
    [{"eventId": 1001, "subscriptionType": "contact.propertyChange", "objectId": 42, "propertyName": "email", "propertyValue": "zoë@example.com"}],
    ensure_ascii=False,
)
DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def hubspot_decode(uri):
    """The URI decoding of HubSpot's request-validation page (its SDKs leave it to the caller)."""
    out, i = [], 0
    while i < len(uri):
        chunk = uri[i : i + 3]
        if chunk.upper() in DECODE:
            out.append(DECODE[chunk.upper()])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def hubspot_case(name, url, timestamp_ms, expect, source, secret=HUBSPOT_SECRET, now=NOW, method="POST", body=HUBSPOT_BODY):
    sig = hubspot_signature.Signature.get_signature(
        secret, HUBSPOT_BODY, "v3", http_uri=hubspot_decode(url), http_method=method, timestamp=str(timestamp_ms)
    )
    verdict = official(
        lambda: hubspot_signature.Signature.is_valid(
            sig, HUBSPOT_SECRET, body, http_uri=hubspot_decode(url), http_method=method,
            signature_version="v3", timestamp=str(timestamp_ms),
        ),
        now,
    )
    headers = [["X-HubSpot-Signature-v3", sig], ["X-HubSpot-Request-Timestamp", str(timestamp_ms)]]
    case(name, "hubspot-v3", HUBSPOT_SECRET, headers, body, expect, source, verdict, now=now, method=method, url=url)


HS = "hubspot-api-client 12.0.0 Signature.get_signature(v3) over the URI decoded as HubSpot documents"
hubspot_case("hubspot_valid", "https://hooks.ivory.test/webhooks/hubspot", NOW * 1000 - 1234, "valid", HS)
hubspot_case(
    "hubspot_encoded_uri",
    "https://hooks.ivory.test/webhooks/hubspot%3Ainst%2F7?tenant=a%40b%2Cc&note=a%20b%26c%3Dd",
    NOW * 1000,
    "valid",
    HS + " (%3A %2F %40 %2C decoded; %20 %26 %3D kept)",
)
hubspot_case(
    "hubspot_wrong_secret",
    "https://hooks.ivory.test/webhooks/hubspot",
    NOW * 1000,
    "NoSignatureMatched",
    HS + ", with another client secret",
    secret="ivory-fake-hubspot-client-secret-9999",
)
hubspot_case(
    "hubspot_stale",
    "https://hooks.ivory.test/webhooks/hubspot",
    (NOW - TOLERANCE - 1) * 1000,
    "TimestampTooOld",
    HS + ", timestamp now - 301 s",
)
hubspot_case(
    "hubspot_future",
    "https://hooks.ivory.test/webhooks/hubspot",
    (NOW + TOLERANCE + 1) * 1000,
    "TimestampInFuture",
    HS + ", timestamp now + 301 s (the official check accepts future timestamps; our policy refuses them)",
)
hubspot_case(
    "hubspot_tampered_body",
    "https://hooks.ivory.test/webhooks/hubspot",
    NOW * 1000,
    "NoSignatureMatched",
    HS + ", over the original body; one byte of the sent body changed",
    body=HUBSPOT_BODY.replace("1001", "1002"),
)

# --- Airtable --------------------------------------------------------------------------------
AIRTABLE_BODY = json.dumps(
    {"base": {"id": "appIvoryFake0001"}, "webhook": {"id": "achIvoryFake0001"}, "timestamp": "2022-02-01T21:25:05.663Z"}
)


def airtable_case(name, secret_b64, expect, source, body=AIRTABLE_BODY, now=NOW):
    mac = hmac.new(base64.b64decode(secret_b64), AIRTABLE_BODY.encode(), hashlib.sha256).hexdigest()
    header = f"hmac-sha256={mac}"
    verdict = official(lambda: WebhookNotification.from_request(body, header, AIRTABLE_SECRET) and True, now)
    case(name, "airtable", AIRTABLE_SECRET, [["X-Airtable-Content-MAC", header]], body, expect, source, verdict, now=now)


AT = "HMAC-SHA256 per Airtable's docs, checked by pyairtable 3.5.1 WebhookNotification.from_request"
airtable_case("airtable_valid", AIRTABLE_SECRET, "valid", AT)
airtable_case(
    "airtable_old_ping_still_valid",
    AIRTABLE_SECRET,
    "valid",
    AT + "; verified a day after the ping's body timestamp (Airtable pings have no timestamp header)",
    now=NOW + 86_400,
)
airtable_case("airtable_wrong_secret", "ivoryFakeAirtableMacSecret999999", "NoSignatureMatched", AT + ", with another secret")
airtable_case(
    "airtable_tampered_body",
    AIRTABLE_SECRET,
    "NoSignatureMatched",
    AT + ", over the original body; one byte of the sent body changed",
    body=AIRTABLE_BODY.replace("0001", "0002", 1),
)

versions = {name: md.version(name) for name in ("stripe", "standardwebhooks", "hubspot-api-client", "pyairtable")}
document = {
    "generated_by": "scripts/gen_webhook_fixtures.py",
    "python": sys.version.split()[0],
    "libraries": versions,
    "note": "All secrets are fake test values. `official` is the official library's own answer "
    "at `now`; `expect` is ours (stricter on future timestamps).",
    "cases": CASES,
}
OUT.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
print(f"wrote {len(CASES)} cases to {OUT}")
for c in CASES:
    print(f"  {c['name']:45} official={c['official'][:60]!r} expect={c['expect']}")

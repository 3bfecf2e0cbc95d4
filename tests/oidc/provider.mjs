// A real OAuth 2.0 / OpenID Connect provider (panva's oidc-provider, certified) on loopback,
// for the OAuth tests of the Ivory Connector SDK. Not for anything but tests: fixed fake
// secrets, in-memory storage, auto-generated signing key.
//
//   node tests/oidc/provider.mjs [--port N] [--redirect-uri URI]... [--access-token-ttl SECONDS]
//
// Environment fallbacks: OIDC_PORT, OIDC_REDIRECT_URIS (space-separated), OIDC_ACCESS_TOKEN_TTL.
// Port 0 (the default) takes a free port. When listening, prints ONE line on stdout:
//   {"ready":true,"port":N,"issuer":"http://127.0.0.1:N"}
// then one JSON line per notable provider event (grant.error with its detail, grant.success,
// grant.revoked, authorization.error), so tests can tell why the server refused something.
//
// Clients (both authorization_code + refresh_token, response_type code, PKCE S256 required,
// the redirect URIs given, matched exactly):
//   ivory-test-basic / fake-secret-basic-not-real   client_secret_basic
//   ivory-test-post  / fake-secret-post-not-real    client_secret_post
// Scopes: openid, records:read. Every code exchange issues a refresh token (see
// issueRefreshToken); refresh tokens rotate (a reused one is refused with invalid_grant and
// revokes the whole grant); codes are single use (a reused one is refused and revokes too).
//
// Login and consent are HTML forms at /interaction/UID (the provider redirects there, with its
// interaction cookies). A browser (or a test playing one) GETs the page, then POSTs
// `decision=approve` (optionally `login=ACCOUNT`, default `tenant-user`) to the same URL;
// `decision=deny` ends the request with error=access_denied at the redirect URI. Login, then
// consent (which grants every scope and claim asked for), each one such round trip.

import crypto from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const CLIENTS = [
  { client_id: 'ivory-test-basic', client_secret: 'fake-secret-basic-not-real', token_endpoint_auth_method: 'client_secret_basic' },
  { client_id: 'ivory-test-post', client_secret: 'fake-secret-post-not-real', token_endpoint_auth_method: 'client_secret_post' },
];

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT ?? '0' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'access-token-ttl': { type: 'string', default: process.env.OIDC_ACCESS_TOKEN_TTL ?? '3600' },
  },
});
const redirectUris = [
  ...values['redirect-uri'],
  ...(process.env.OIDC_REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean),
];
if (redirectUris.length === 0) {
  console.error('provider.mjs: give at least one --redirect-uri (or OIDC_REDIRECT_URIS)');
  process.exit(2);
}
const port = Number.parseInt(values.port, 10);
const accessTokenTtl = Number.parseInt(values['access-token-ttl'], 10);

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;
  const provider = makeProvider(issuer);
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const match = /^\/interaction\/([\w-]+)$/.exec(new URL(req.url, issuer).pathname);
    if (!match) {
      callback(req, res);
      return;
    }
    interaction(provider, req, res).catch((err) => {
      res.statusCode = 400;
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.end(`interaction failed: ${err.message}\n`);
    });
  });
  console.log(JSON.stringify({ ready: true, port: actualPort, issuer }));
});

function makeProvider(issuer) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const provider = new Provider(issuer, {
    clients: CLIENTS.map((client) => ({
      ...client,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
    })),
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'ES256' }] },
    cookies: { keys: ['fake-cookie-key-for-tests-only'] },
    scopes: ['openid', 'records:read'],
    pkce: { methods: ['S256'], required: () => true },
    // Like most SaaS providers, a refresh token with every code exchange of a client allowed
    // the refresh_token grant. (Stock oidc-provider follows OIDC Core: only for offline_access
    // asked with prompt=consent, which a plain OAuth 2.0 client never sends.)
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      Grant: 14 * 24 * 3600,
      Interaction: 600,
      RefreshToken: 14 * 24 * 3600,
      Session: 3600,
      IdToken: 3600,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // Error pages (a redirect URI that is not registered, an unknown client…) as plain text.
    renderError: (ctx, out) => {
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = `${out.error}: ${out.error_description}\n`;
    },
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  });
  const report = (event, fields) => console.log(JSON.stringify({ event, ...fields }));
  provider.on('grant.error', (_ctx, err) => report('grant.error', { error: err.error, detail: err.error_detail ?? err.error_description }));
  provider.on('grant.success', (ctx) => report('grant.success', { grant_type: ctx.oidc.params.grant_type }));
  provider.on('grant.revoked', (_ctx, grantId) => report('grant.revoked', { grant: grantId }));
  provider.on('authorization.error', (_ctx, err) => report('authorization.error', { error: err.error, detail: err.error_description }));
  provider.on('server_error', (_ctx, err) => report('server_error', { detail: err.message }));
  return provider;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const escape = (text) => String(text).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>${escape(prompt.name)}</title>
<p>${escape(params.client_id)} asks to ${escape(prompt.name)} (scope: ${escape(params.scope ?? '')})</p>
<form method="post" action="/interaction/${escape(uid)}">
<input name="login" value="tenant-user">
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button>
</form>\n`);
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  const form = await readForm(req);
  if (form.get('decision') !== 'approve') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user declined',
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, {
      login: { accountId: form.get('login') || 'tenant-user' },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      consent: details.grantId ? {} : { grantId },
    }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unknown prompt ${prompt.name}`);
}

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));

//! OAuth: an access token that expires in the middle of a sync is refreshed once, at HubSpot's
//! v3 token endpoint, through the runtime's `OAuthTokenSource`, and the sync finishes exactly.

use std::collections::HashMap;
use std::sync::Arc;

use ivory_connector_hubspot::HubSpotConnector;
use ivory_runtime::oauth::{ClientAuth, OAuthApp, OAuthTokenSource, http::token_client};
use ivory_runtime::store::StoredGrant;
use ivory_sdk::Clock;
use ivory_testkit::hubspot::{
    ACCESS_TOKEN, CLIENT_ID, CLIENT_SECRET, FakeHubSpot, Limits, START_MS,
};

use crate::support::{TENANT, assert_mirrors, at, bearer, fast, options, runner, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_expiring_mid_sync_is_refreshed_once() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    fake.create_contacts(1000, START_MS);
    let w = world(fast()).await;
    assert!(
        ivory_connector_hubspot::manifest()
            .connection
            .token_url
            .as_deref()
            == Some("https://api.hubapi.com/oauth/v3/token"),
        "the current (v3) token endpoint, not the deprecated v1"
    );
    let vars: HashMap<&str, &str> = HashMap::from([
        ("IVORY_OAUTH_CLIENT_ID", CLIENT_ID),
        ("IVORY_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("IVORY_OAUTH_CLIENT_AUTH", "body"),
    ]);
    let app = OAuthApp::from_env(|k| vars.get(k).map(|v| (*v).to_owned())).expect("app");
    assert_eq!(app.client_auth, ClientAuth::RequestBody);
    let source = Arc::new(OAuthTokenSource::new(
        w.store.clone(),
        w.vault.clone(),
        app,
        fake.token_url(),
        &w.installation.id,
        Clock::starting_at(at(0)),
        token_client().expect("client"),
    ));
    // The third request finds the token expired (1,000 contacts: 5 searches, then the
    // archived list).
    fake.expire_tokens_at_request(3);
    let mut options = options(&fake);
    options.token_source = Some(source);
    let summary = runner(&w.store, 0)
        .sync(
            TENANT,
            &w.manifest,
            &HubSpotConnector::default(),
            bearer(),
            options,
        )
        .await
        .expect("sync");
    assert_eq!(fake.refreshes(), 1, "one refresh");
    assert_eq!(summary.totals.records_created, 1000);
    let unauthorized = fake.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(unauthorized, 1, "one 401, then the refreshed token");
    let token_calls = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/v3/token")
        .count();
    assert_eq!(token_calls, 1);
    assert_mirrors(&w.store, &fake).await;
    let (grant, _) = w
        .store
        .credentials(&w.installation.id, &w.vault)
        .await
        .expect("read")
        .expect("grant");
    let StoredGrant::OAuth2(grant) = grant else {
        panic!("an OAuth grant");
    };
    assert_ne!(
        grant.access_token.expose(),
        ACCESS_TOKEN,
        "the refreshed token is stored"
    );
    assert!(
        grant.expires_at.is_some(),
        "with its expiry (expires_in 1800)"
    );
}

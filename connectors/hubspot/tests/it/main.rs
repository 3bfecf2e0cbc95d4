//! HubSpot Contact Sync against the testkit's faithful fake HubSpot, on real stores in temp
//! dirs: windows and the search cap, ties at window boundaries, drift, crashes, the lookback,
//! deletions, conflicts under each policy, outbound creates and batches, OAuth refresh, and
//! 429 pacing.

mod conflicts;
mod oauth;
mod outbound;
mod pacing;
mod pull;
mod support;

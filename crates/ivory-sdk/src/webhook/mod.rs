//! Webhook verification: Stripe, HubSpot v3, Airtable, Standard Webhooks, plain HMAC.

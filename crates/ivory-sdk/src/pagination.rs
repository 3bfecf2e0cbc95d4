//! Pagination: every read pages, lazily, one page in memory at a time.
//!
//! [`paginate`] is the engine: given "fetch the page after token T", it yields [`Page`]s as a
//! `Stream`, fetching the next page only when the consumer asks for it. It stops the sync with
//! a clear [`PageError`] when the upstream loops (a page token repeats), claims there is more
//! without saying where to continue, or exceeds the max-pages guard.
//!
//! The upstream-specific helpers build on it:
//! - [`stripe_list`]: `limit` + `starting_after`, `{data, has_more}`;
//! - [`hubspot_list`]: `after` + `{results, paging.next.after}` (GET lists), and
//!   [`hubspot_search`] for the POST search endpoints (`after` in the body);
//! - [`airtable_list`]: `pageSize` + `offset`, `{records, offset}`;
//! - [`link_header_list`]: RFC 8288 `Link: <…>; rel="next"`.
//!
//! Each page's `next` token is what an `opaque_token` cursor persists: resuming a listing after
//! page *k* is `start = page_k.next`.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::fetch::{FetchError, Fetcher};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The page's items, in upstream order.
    pub items: Vec<T>,
    /// The token that fetches the page after this one; `None` on the last page.
    pub next: Option<String>,
    /// 1-based page number within this listing.
    pub number: u64,
}

/// Guards of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Stop with [`PageError::TooManyPages`] after this many pages.
    pub max_pages: u64,
}

impl Default for PageLimits {
    fn default() -> Self {
        Self {
            max_pages: 1_000_000,
        }
    }
}

/// Why a listing stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// Fetching or decoding a page failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The upstream returned a page token it had already returned: it is looping.
    #[error("the upstream repeated page token {token:?} at page {page}: a paging loop; stopping")]
    RepeatedToken {
        /// The repeated token (truncated).
        token: String,
        /// The page that returned it.
        page: u64,
    },
    /// The upstream said there is more but gave nothing to continue from.
    #[error("page {page} says there are more results but gives no token to continue from")]
    MoreWithoutToken {
        /// The page.
        page: u64,
    },
    /// The max-pages guard tripped.
    #[error("more than {max} pages; stopping (raise PageLimits::max_pages if this is expected)")]
    TooManyPages {
        /// The guard.
        max: u64,
    },
}

/// How many recent page tokens are remembered to detect a loop (hashes, so memory stays flat;
/// longer cycles are caught by the max-pages guard).
const RECENT_TOKENS: usize = 1024;

struct State<F> {
    fetch_page: F,
    token: Option<String>,
    number: u64,
    done: bool,
    recent: VecDeque<u64>,
    limits: PageLimits,
}

/// Streams the pages of a listing. `fetch_page(token)` fetches the page after `token` (`None`:
/// the first page) and returns its items and the next token (`None` at the end).
pub fn paginate<T, F, Fut>(
    start: Option<String>,
    limits: PageLimits,
    fetch_page: F,
) -> impl Stream<Item = Result<Page<T>, PageError>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), PageError>>,
{
    let state = State {
        fetch_page,
        token: start,
        number: 0,
        done: false,
        recent: VecDeque::new(),
        limits,
    };
    futures::stream::try_unfold(state, |mut state| async move {
        if state.done {
            return Ok(None);
        }
        if state.number >= state.limits.max_pages {
            return Err(PageError::TooManyPages {
                max: state.limits.max_pages,
            });
        }
        let (items, next) = (state.fetch_page)(state.token.clone())
            .await
            .map_err(|error| match error {
                PageError::MoreWithoutToken { .. } => PageError::MoreWithoutToken {
                    page: state.number + 1,
                },
                other => other,
            })?;
        state.number += 1;
        if let Some(token) = &next {
            let hash = hash_token(token);
            if state.token.as_deref() == Some(token.as_str()) || state.recent.contains(&hash) {
                return Err(PageError::RepeatedToken {
                    token: token.chars().take(64).collect(),
                    page: state.number,
                });
            }
            if state.recent.len() == RECENT_TOKENS {
                state.recent.pop_front();
            }
            state.recent.push_back(hash);
        } else {
            state.done = true;
        }
        state.token.clone_from(&next);
        let page = Page {
            items,
            next,
            number: state.number,
        };
        Ok(Some((page, state)))
    })
}

fn hash_token(token: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

/// An item with an id, for cursor pagination that continues after the last item.
pub trait HasId {
    /// The item's id, if it has one.
    fn item_id(&self) -> Option<&str>;
}

impl HasId for serde_json::Value {
    fn item_id(&self) -> Option<&str> {
        self.get("id").and_then(serde_json::Value::as_str)
    }
}

#[derive(Deserialize)]
struct StripeList<T> {
    data: Vec<T>,
    has_more: bool,
}

/// Pages a Stripe list endpoint (`GET path?limit=…&starting_after=…`), newest first.
/// `params` are extra query parameters; `page_size` is clamped to 1..=100.
pub fn stripe_list<T>(
    fetcher: Fetcher,
    path: String,
    params: Vec<(String, String)>,
    page_size: u32,
    start_after: Option<String>,
    limits: PageLimits,
) -> impl Stream<Item = Result<Page<T>, PageError>>
where
    T: DeserializeOwned + HasId,
{
    let limit = page_size.clamp(1, 100).to_string();
    paginate(start_after, limits, move |token| {
        let mut request = fetcher
            .get(&path)
            .query(&params)
            .query(&[("limit", limit.as_str())]);
        if let Some(after) = &token {
            request = request.query(&[("starting_after", after.as_str())]);
        }
        let fetcher = fetcher.clone();
        async move {
            let list: StripeList<T> = request.send().await?.json()?;
            fetcher.count_page();
            let next = if list.has_more {
                match list.data.last().and_then(HasId::item_id) {
                    Some(id) => Some(id.to_owned()),
                    None => return Err(PageError::MoreWithoutToken { page: 0 }),
                }
            } else {
                None
            };
            Ok((list.data, next))
        }
    })
}

#[derive(Deserialize)]
struct HubSpotList<T> {
    results: Vec<T>,
    #[serde(default)]
    paging: Option<HubSpotPaging>,
}

#[derive(Deserialize)]
struct HubSpotPaging {
    next: Option<HubSpotNext>,
}

#[derive(Deserialize)]
struct HubSpotNext {
    after: String,
}

impl<T> HubSpotList<T> {
    fn split(self) -> (Vec<T>, Option<String>) {
        let next = self.paging.and_then(|p| p.next).map(|n| n.after);
        (self.results, next)
    }
}

/// Pages a HubSpot CRM list endpoint (`GET path?limit=…&after=…`, `paging.next.after`).
pub fn hubspot_list<T>(
    fetcher: Fetcher,
    path: String,
    params: Vec<(String, String)>,
    page_size: u32,
    start: Option<String>,
    limits: PageLimits,
) -> impl Stream<Item = Result<Page<T>, PageError>>
where
    T: DeserializeOwned,
{
    let limit = page_size.clamp(1, 100).to_string();
    paginate(start, limits, move |token| {
        let mut request = fetcher
            .get(&path)
            .query(&params)
            .query(&[("limit", limit.as_str())]);
        if let Some(after) = &token {
            request = request.query(&[("after", after.as_str())]);
        }
        let fetcher = fetcher.clone();
        async move {
            let list: HubSpotList<T> = request.send().await?.json()?;
            fetcher.count_page();
            Ok(list.split())
        }
    })
}

/// Pages a HubSpot search endpoint (`POST path` with `body`, `after` set in the body per page).
/// The search is a read, so it is retried like a GET.
pub fn hubspot_search<T>(
    fetcher: Fetcher,
    path: String,
    body: serde_json::Value,
    start: Option<String>,
    limits: PageLimits,
) -> impl Stream<Item = Result<Page<T>, PageError>>
where
    T: DeserializeOwned,
{
    paginate(start, limits, move |token| {
        let mut body = body.clone();
        if let (Some(after), Some(object)) = (&token, body.as_object_mut()) {
            object.insert("after".into(), serde_json::Value::String(after.clone()));
        }
        let request = fetcher.post(&path).json(&body).retry_safe();
        let fetcher = fetcher.clone();
        async move {
            let list: HubSpotList<T> = request.send().await?.json()?;
            fetcher.count_page();
            Ok(list.split())
        }
    })
}

#[derive(Deserialize)]
struct AirtableList<T> {
    records: Vec<T>,
    #[serde(default)]
    offset: Option<String>,
}

/// Pages an Airtable list-records endpoint (`GET path?pageSize=…&offset=…`). `page_size` is
/// clamped to 1..=100.
pub fn airtable_list<T>(
    fetcher: Fetcher,
    path: String,
    params: Vec<(String, String)>,
    page_size: u32,
    limits: PageLimits,
) -> impl Stream<Item = Result<Page<T>, PageError>>
where
    T: DeserializeOwned,
{
    let size = page_size.clamp(1, 100).to_string();
    paginate(None, limits, move |token| {
        let mut request = fetcher
            .get(&path)
            .query(&params)
            .query(&[("pageSize", size.as_str())]);
        if let Some(offset) = &token {
            request = request.query(&[("offset", offset.as_str())]);
        }
        let fetcher = fetcher.clone();
        async move {
            let list: AirtableList<T> = request.send().await?.json()?;
            fetcher.count_page();
            Ok((list.records, list.offset))
        }
    })
}

/// Pages an endpoint that returns a JSON array per page and links the next page with an
/// RFC 8288 `Link: <url>; rel="next"` header. The next URL goes through the same host checks.
pub fn link_header_list<T>(
    fetcher: Fetcher,
    first: String,
    limits: PageLimits,
) -> impl Stream<Item = Result<Page<T>, PageError>>
where
    T: DeserializeOwned,
{
    paginate(None, limits, move |token| {
        let url = token.unwrap_or_else(|| first.clone());
        let request = fetcher.get(&url);
        let fetcher = fetcher.clone();
        async move {
            let response = request.send().await?;
            let next = response
                .headers()
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            let items: Vec<T> = response.json()?;
            fetcher.count_page();
            Ok((items, next))
        }
    })
}

/// The `rel="next"` target of an RFC 8288 `Link` header value, if any.
///
/// ```
/// use ivory_sdk::pagination::next_link;
/// let v = r#"<https://api.example.com/items?page=3>; rel="next", <https://api.example.com/items?page=9>; rel="last""#;
/// assert_eq!(next_link(v).as_deref(), Some("https://api.example.com/items?page=3"));
/// ```
pub fn next_link(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        // The parameters of this link value end where the next `<` starts; a `,` separates
        // link values.
        let params = after[..params_end].trim_end().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, val)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && val
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_owned());
        }
        rest = &after[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use proptest::prelude::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"<https://a/3>; rel="next", <https://a/9>; rel="last""#).as_deref(),
            Some("https://a/3")
        );
        assert_eq!(
            next_link(r#"<https://a/3>; rel=next, <https://a/9>; rel=last"#).as_deref(),
            Some("https://a/3")
        );
        assert_eq!(
            next_link(r#"<https://a/x?p=2>; rel=next"#).as_deref(),
            Some("https://a/x?p=2")
        );
        assert_eq!(
            next_link(r#"<https://a/1>; rel="prev", <https://a/3>; rel="next last""#).as_deref(),
            Some("https://a/3")
        );
        assert_eq!(next_link(r#"<https://a/1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
    }

    proptest! {
        #[test]
        fn link_parser_never_panics(value in "\\PC{0,80}") {
            let _ = next_link(&value);
        }
    }

    async fn collect(
        pages: Vec<(Vec<u32>, Option<&'static str>)>,
        limits: PageLimits,
    ) -> Result<Vec<Page<u32>>, PageError> {
        let stream = paginate(None, limits, move |token: Option<String>| {
            let index = token.map_or(0, |t| {
                t.trim_start_matches('p').parse::<usize>().unwrap_or(0)
            });
            let page = pages.get(index).cloned();
            async move {
                let (items, next) = page.unwrap_or_default();
                Ok((items, next.map(str::to_owned)))
            }
        });
        stream.try_collect().await
    }

    #[tokio::test]
    async fn pages_until_no_token() {
        let pages = collect(
            vec![
                (vec![1, 2], Some("p1")),
                (vec![3], Some("p2")),
                (vec![4], None),
            ],
            PageLimits::default(),
        )
        .await
        .expect("pages");
        let items: Vec<u32> = pages.iter().flat_map(|p| p.items.clone()).collect();
        assert_eq!(items, vec![1, 2, 3, 4]);
        assert_eq!(pages.last().map(|p| p.number), Some(3));
    }

    #[tokio::test]
    async fn a_repeated_token_stops_the_listing() {
        let err = collect(
            vec![
                (vec![1], Some("p1")),
                (vec![2], Some("p2")),
                (vec![3], Some("p1")),
            ],
            PageLimits::default(),
        )
        .await
        .expect_err("loop");
        assert!(
            matches!(err, PageError::RepeatedToken { page: 3, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn max_pages_guard() {
        let err = collect(
            vec![
                (vec![1], Some("p1")),
                (vec![2], Some("p2")),
                (vec![3], None),
            ],
            PageLimits { max_pages: 2 },
        )
        .await
        .expect_err("guard");
        assert!(matches!(err, PageError::TooManyPages { max: 2 }), "{err}");
    }
}

//! Pages of a list ordered by id, as Graph pages its collections: `$top`
//! items at most, and an `@odata.nextLink` whose opaque `$skiptoken` is the
//! id the page ended with (base64url). Ordering by id means that an item
//! created, renewed or changed between two pages never moves another across
//! the boundary. Used by the subscription list and the tenant's user list.

use base64::Engine;

use crate::http::error::ApiError;
use crate::http::wire;

/// What a list's pages hold, for its messages and defaults.
#[derive(Clone, Copy, Debug)]
pub struct Listed {
    /// The plural the messages name, such as `subscriptions`.
    pub what: &'static str,
    /// Items in a page when `$top` is not given.
    pub default_page: usize,
    /// The largest `$top`.
    pub max_page: usize,
}

/// One page of a list: how many, and after which id.
#[derive(Debug)]
pub struct Page {
    /// `$top` as given, which the next link repeats.
    top: Option<usize>,
    /// The id the previous page ended with (`$skiptoken`, base64url of it).
    pub after: Option<String>,
    listed: Listed,
}

impl Page {
    /// The page a query string asks for; other parameters are ignored.
    pub fn parse(query: Option<&str>, listed: Listed) -> Result<Page, ApiError> {
        let mut page = Page {
            top: None,
            after: None,
            listed,
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "$top" | "top" => {
                    let top = value
                        .parse::<usize>()
                        .ok()
                        .filter(|top| (1..=listed.max_page).contains(top))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "$top is {:?}; give a number of {} from 1 to {}.",
                                wire::truncate(&value),
                                listed.what,
                                listed.max_page
                            ))
                        })?;
                    page.top = Some(top);
                }
                "$skiptoken" | "skiptoken" => {
                    let after = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(value.as_bytes())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| {
                            ApiError::BadRequest(
                                "$skiptoken is not one presenced gave; follow @odata.nextLink as it is.".into(),
                            )
                        })?;
                    page.after = Some(after);
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// How many items the page holds at most.
    pub fn size(&self) -> usize {
        self.top.unwrap_or(self.listed.default_page)
    }

    /// The page of `all` (sorted by `id`) this asks for, and the link to
    /// the next one when more follow; `base` is the list's own address.
    pub fn of<'a, T>(
        &self,
        all: &'a [T],
        id: impl Fn(&T) -> &str,
        base: &str,
    ) -> (&'a [T], Option<String>) {
        let start = match &self.after {
            Some(after) => all.partition_point(|item| id(item) <= after.as_str()),
            None => 0,
        };
        let end = all.len().min(start + self.size());
        let page = &all[start..end];
        let next = match page.last() {
            Some(last) if end < all.len() => Some(self.next_link(base, id(last))),
            _ => None,
        };
        (page, next)
    }

    /// The address of the page after one that ended with `last`.
    fn next_link(&self, base: &str, last: &str) -> String {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last);
        let top = self
            .top
            .map(|top| format!("$top={top}&"))
            .unwrap_or_default();
        format!("{base}?{top}$skiptoken={token}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBERS: Listed = Listed {
        what: "numbers",
        default_page: 2,
        max_page: 3,
    };

    fn walk(query: Option<&str>, all: &[&str]) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut query = query.map(str::to_owned);
        loop {
            let page = Page::parse(query.as_deref(), NUMBERS).expect("a valid page");
            let (items, next) = page.of(all, |item| item, "http://host/list");
            pages.push(items.iter().map(|item| item.to_string()).collect());
            match next {
                Some(link) => {
                    query = Some(
                        link.strip_prefix("http://host/list?")
                            .expect("a link to the same list")
                            .to_owned(),
                    );
                }
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let all = ["a", "b", "c", "d", "e"];
        assert_eq!(
            walk(None, &all),
            [vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
        assert_eq!(
            walk(Some("$top=3"), &all),
            [vec!["a", "b", "c"], vec!["d", "e"]]
        );
        assert_eq!(walk(Some("$top=3"), &[]), [Vec::<String>::new()]);
    }

    #[test]
    fn a_page_resumes_after_its_token_even_when_that_item_is_gone() {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("b");
        let page = Page::parse(Some(&format!("$skiptoken={token}")), NUMBERS).expect("valid");
        let (items, _) = page.of(&["a", "c", "d"], |item| item, "x");
        assert_eq!(items, ["c", "d"]);
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for query in [
            "$top=0",
            "$top=4",
            "$top=x",
            "$skiptoken=%%%",
            "$skiptoken=_w",
        ] {
            let error = Page::parse(Some(query), NUMBERS).expect_err(query);
            assert_eq!(
                error.status(),
                axum::http::StatusCode::BAD_REQUEST,
                "{query}"
            );
        }
    }
}

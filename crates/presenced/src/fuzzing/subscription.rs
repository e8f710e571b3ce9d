//! A subscription's `resource` (one user, or `$filter=id in (...)`) and its
//! notification URLs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{block_on, check_refusal};
use crate::notify::address::{check_url, is_public};
use crate::notify::subscription::{MAX_USERS, parse_resource};

/// The input as a subscription's `resource` and as its `notificationUrl`:
/// - a resource names 1 to 650 distinct users, and the filter listing them
///   (and, for one user, the single-user form) parses to the same users;
/// - a URL is accepted only with a host and the scheme `https` (or `http`
///   where private webhooks are allowed); with an IP address for a host and
///   private webhooks refused, only if the address is public;
/// - an IPv4 address is public exactly when each IPv6 form that carries it
///   (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is, with the input's first
///   four bytes as the address.
pub fn subscription(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_resource(&text);
    check_notification_url(&text);
    if let Some(octets) = data.first_chunk::<4>() {
        check_ipv4_forms(Ipv4Addr::from(*octets));
    }
}

fn check_resource(text: &str) {
    let users = match parse_resource(text) {
        Ok(users) => users,
        Err(message) => {
            check_refusal(text, &message);
            assert!(message.contains("resource"), "{text:?}: {message}");
            return;
        }
    };
    assert!(
        (1..=MAX_USERS).contains(&users.len()),
        "{text:?} names {} users",
        users.len()
    );
    for (index, user) in users.iter().enumerate() {
        assert!(
            !users[..index].contains(user),
            "{text:?} names {user} twice"
        );
    }
    let listed: Vec<String> = users.iter().map(|user| format!("'{user}'")).collect();
    let filter = format!(
        "/communications/presences?$filter=id in ({})",
        listed.join(",")
    );
    assert_eq!(
        parse_resource(&filter).as_ref(),
        Ok(&users),
        "{text:?} written as {filter:?}"
    );
    if let [user] = users.as_slice() {
        let single = format!("/communications/presences/{user}");
        assert_eq!(parse_resource(&single).as_ref(), Ok(&users), "{single:?}");
    }
}

fn check_notification_url(text: &str) {
    const FIELD: &str = "notificationUrl";
    // Allowing private webhooks skips the address check, so nothing is
    // looked up in DNS.
    match block_on(check_url(FIELD, text, true)) {
        Ok(url) => {
            assert!(matches!(url.scheme(), "https" | "http"), "{text:?}: {url}");
            assert!(url.host_str().is_some_and(|host| !host.is_empty()));
        }
        Err(message) => {
            check_refusal(text, &message);
            assert!(message.starts_with(FIELD), "{text:?}: {message}");
        }
    }
    // With private webhooks refused, only a URL whose host is an address
    // is checked: a name would be looked up in DNS.
    let address = url::Url::parse(text).ok().and_then(|url| match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    });
    if let Some(address) = address {
        match block_on(check_url(FIELD, text, false)) {
            Ok(url) => {
                assert_eq!(url.scheme(), "https", "{text:?}");
                assert!(is_public(address), "{text:?} reaches {address}");
            }
            Err(message) => {
                check_refusal(text, &message);
                assert!(message.starts_with(FIELD), "{text:?}: {message}");
            }
        }
    }
}

fn check_ipv4_forms(v4: Ipv4Addr) {
    let public = is_public(IpAddr::V4(v4));
    let [a, b, c, d] = v4.octets();
    let (high, low) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    let forms = [
        ("IPv4-mapped", v4.to_ipv6_mapped()),
        ("IPv4-compatible", v4.to_ipv6_compatible()),
        ("NAT64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, high, low)),
        ("6to4", Ipv6Addr::new(0x2002, high, low, 0, 0, 0, 0, 1)),
    ];
    for (form, v6) in forms {
        assert_eq!(
            is_public(IpAddr::V6(v6)),
            public,
            "{v4} is {}public, but its {form} form {v6} is not",
            if public { "" } else { "not " }
        );
    }
}

//! Where presenced may send a webhook. A notification URL is chosen by the
//! caller, so without a guard any tenant could make presenced call services
//! on its own network (SSRF). Unless private webhooks are allowed
//! (`--allow-private-webhooks`, or `--auth none`), a URL must be `https` and
//! its host must resolve only to public addresses: when the subscription is
//! created, and again at every delivery, through [`PublicResolver`], so that
//! a name later pointed at a private address is refused then too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `address` is reachable on the public internet: not loopback,
/// private, link-local, shared (CGNAT), unspecified, multicast, broadcast or
/// reserved for documentation.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let protocol_assignments = a == 192 && b == 0 && c == 0;
    !(address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || shared
        || benchmarking
        || protocol_assignments
        || a == 0
        || a >= 240)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    let first = segments[0];
    let octets = address.octets();
    let embedded =
        |at: usize| Ipv4Addr::new(octets[at], octets[at + 1], octets[at + 2], octets[at + 3]);
    // Forms that carry an IPv4 address, which is what they reach: the
    // deprecated IPv4-compatible ::a.b.c.d, NAT64 (64:ff9b::/96 and the
    // local-use 64:ff9b:1::/48) and 6to4 (2002::/16).
    if segments[..6] == [0; 6] && !address.is_loopback() && !address.is_unspecified() {
        return is_public_v4(embedded(12));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(12));
    }
    if first == 0x64 && segments[1] == 0xff9b && segments[2] == 1 {
        return false;
    }
    if first == 0x2002 {
        return is_public_v4(embedded(2));
    }
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let site_local = first & 0xffc0 == 0xfec0;
    let documentation = first == 0x2001 && segments[1] == 0x0db8;
    !(address.is_loopback()
        || site_local
        || address.is_unspecified()
        || address.is_multicast()
        || unique_local
        || link_local
        || documentation)
}

/// Checks a notification URL as the caller gave it: absolute `https` (or
/// `http` when private webhooks are allowed), with a host, and, unless
/// private webhooks are allowed, resolving only to public addresses.
/// `field` names the property in the error.
pub async fn check_url(field: &str, text: &str, allow_private: bool) -> Result<url::Url, String> {
    let shown = crate::wire::truncate(text);
    let url = url::Url::parse(text)
        .map_err(|error| format!("{field} '{shown}' is not an absolute URL ({error})"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{field} '{shown}' has no host"))?
        .to_string();
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            // Named after the address check below, so that a private
            // address is reported as such, whatever its scheme.
            check_host(field, &shown, &url, &host, allow_private).await?;
            return Err(format!(
                "{field} '{shown}' must use https, as Graph requires (http is accepted only with --allow-private-webhooks or --auth none)"
            ));
        }
        other => {
            return Err(format!(
                "{field} '{shown}' has the scheme '{other}'; it must be an https URL"
            ));
        }
    }
    check_host(field, &shown, &url, &host, allow_private).await?;
    Ok(url)
}

async fn check_host(
    field: &str,
    shown: &str,
    url: &url::Url,
    host: &str,
    allow_private: bool,
) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(address) => vec![address],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|error| {
                format!("{field} '{shown}': its host '{host}' does not resolve ({error})")
            })?
            .map(|address| address.ip())
            .collect(),
    };
    if let Some(private) = addresses.iter().find(|address| !is_public(**address)) {
        return Err(format!(
            "{field} '{shown}' resolves to {private}, a private, loopback or link-local address; presenced delivers only to public addresses unless started with --allow-private-webhooks"
        ));
    }
    if addresses.is_empty() {
        return Err(format!(
            "{field} '{shown}': its host '{host}' resolves to no address"
        ));
    }
    Ok(())
}

/// The resolver of the webhook client when private webhooks are refused:
/// the system's, keeping only public addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "'{host}' resolves to no public address; presenced delivers only to public addresses unless started with --allow-private-webhooks"
                )
                .into());
            }
            let addresses: Addrs = Box::new(found.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::10.0.0.5",
            "64:ff9b::a00:5",
            "64:ff9b:1::1",
            "2002:c0a8:0101::1",
            "fec0::1",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            let parsed: IpAddr = address.parse().expect("an address");
            assert!(!is_public(parsed), "{address} counted as public");
        }
        for address in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let parsed: IpAddr = address.parse().expect("an address");
            assert!(is_public(parsed), "{address} counted as private");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_for_scheme_and_address() {
        let error = check_url("notificationUrl", "http://127.0.0.1:9/hook", false)
            .await
            .expect_err("loopback refused");
        assert!(error.contains("loopback"), "{error}");
        let error = check_url("notificationUrl", "https://[::1]/hook", false)
            .await
            .expect_err("loopback refused");
        assert!(error.contains("private"), "{error}");
        let error = check_url("notificationUrl", "https://localhost/hook", false)
            .await
            .expect_err("localhost refused");
        assert!(error.contains("private"), "{error}");
        let error = check_url("notificationUrl", "ftp://example.com/", true)
            .await
            .expect_err("ftp refused");
        assert!(error.contains("https"), "{error}");
        let error = check_url("notificationUrl", "not a url", true)
            .await
            .expect_err("refused");
        assert!(error.contains("absolute URL"), "{error}");
        let error = check_url("notificationUrl", "http://93.184.216.34/hook", false)
            .await
            .expect_err("http refused");
        assert!(error.contains("must use https"), "{error}");
        check_url("notificationUrl", "http://127.0.0.1:9/hook", true)
            .await
            .expect("allowed when private webhooks are");
        check_url("notificationUrl", "https://93.184.216.34/hook", false)
            .await
            .expect("a public address");
    }
}

//! The offline commands of `--store redis`: `presenced check --store redis`
//! (what a keyspace holds and who owns its partitions) and `presenced
//! migrate` (an embedded store copied into Redis, for a team that outgrows
//! one machine).

use std::fmt::Write as _;
use std::path::Path;

use presence_core::{UserFacts, UserKey};
use presence_store::{
    Durability, EmbeddedStore, Facts, RedisOptions, RedisStore, Subscriptions, redis::inspect,
};

use crate::clock::system_now;

/// A summary of the keyspace, or why it cannot be read.
pub async fn check_redis(options: RedisOptions) -> Result<String, String> {
    let found = inspect(options)
        .await
        .map_err(|error| format!("cannot read Redis: {error}"))?;
    let kind = if found.cluster {
        "a Redis Cluster"
    } else {
        "a standalone Redis"
    };
    let Some(layout) = found.layout else {
        return Ok(format!(
            "{kind} with no presenced keyspace yet (the first node creates it)"
        ));
    };
    let mut text = format!(
        "{kind} holding a presenced keyspace: key layout version {layout}, {} partitions, {} tenants, {} users holding facts, {} subscriptions\n",
        found.partitions, found.tenants, found.users, found.subscriptions
    );
    if !found.settings.is_empty() {
        let settings: Vec<String> = found
            .settings
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        let _ = writeln!(
            text,
            "settings every node must share: {}",
            settings.join(", ")
        );
    }
    let mut by_owner: std::collections::BTreeMap<String, (Vec<u32>, u64)> = Default::default();
    for (partition, (owner, due)) in found.owners.iter().enumerate() {
        let node = owner
            .as_deref()
            .and_then(|owner| owner.rsplit_once('/'))
            .map_or("(no owner)".to_string(), |(node, _)| node.to_string());
        let entry = by_owner.entry(node).or_default();
        entry.0.push(partition as u32);
        entry.1 += due;
    }
    for (node, (partitions, due)) in by_owner {
        let _ = writeln!(
            text,
            "  {node}: {} partitions ({}), {due} users due",
            partitions.len(),
            ranges(&partitions)
        );
    }
    Ok(text.trim_end().to_string())
}

/// `0-3, 7, 9-10`.
fn ranges(partitions: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = partitions.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}

/// Copies the embedded store in `from` (facts, subscriptions, marks) into
/// the Redis of `options`. Users already held in Redis are left as they
/// are; subscriptions and marks are written over (marks only ever rise).
/// Answers a summary.
pub async fn migrate(from: &Path, options: RedisOptions) -> Result<String, String> {
    let dir = from.to_path_buf();
    let source = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, Durability::Strict))
        .await
        .map_err(|error| format!("opening the embedded store stopped: {error}"))?
        .map_err(|error| error.to_string())?;
    let target = RedisStore::connect(options)
        .await
        .map_err(|error| format!("cannot use Redis: {error}"))?;
    let mut users: Vec<(UserKey, UserFacts)> = Vec::new();
    source
        .scan(&mut |key, facts| users.push((key.clone(), facts.clone())))
        .await
        .map_err(|error| error.to_string())?;
    let now = system_now();
    let (mut copied, mut kept) = (0u64, 0u64);
    for (key, facts) in &users {
        if target
            .put_facts(key, facts, now)
            .await
            .map_err(|error| format!("copying the facts of {}: {error}", key.user))?
        {
            copied += 1;
        } else {
            kept += 1;
        }
    }
    let subscriptions = source
        .subscriptions()
        .await
        .map_err(|error| error.to_string())?;
    for (id, record) in &subscriptions {
        target
            .put_subscription(id, record.clone())
            .await
            .map_err(|error| format!("copying the subscription {id}: {error}"))?;
    }
    let marks = source.marks().await.map_err(|error| error.to_string())?;
    target
        .put_marks(&marks)
        .await
        .map_err(|error| format!("copying the acknowledged marks: {error}"))?;
    Ok(format!(
        "presenced migrate: copied {copied} users ({kept} already in Redis were left as they are), {} subscriptions and {} acknowledged marks from {} into Redis",
        subscriptions.len(),
        marks.len(),
        from.display()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_are_shown_as_ranges() {
        assert_eq!(super::ranges(&[0, 1, 2, 3, 7, 9, 10]), "0-3, 7, 9-10");
        assert_eq!(super::ranges(&[]), "");
    }
}

//! The Lua scripts: each runs atomically in one slot (every key it names
//! carries the same partition tag). The model stays in Rust: the scripts
//! only compare versions and fencing tokens and write what Rust computed.
//! Each begins with `#!lua`, so that a write sent to a demoted primary is
//! answered with a redirection rather than an error.

use redis::Script;

/// One user's compare-and-set.
///
/// KEYS: facts, due, changes, fence. ARGV: the expected version (8 bytes,
/// empty for a user nothing is stored for), the new value (empty: leave the
/// facts as they are), the due instant (ms), what to do with the due entry
/// (`lt`: file it if earlier, `set`: file it exactly, `rem`: remove it,
/// empty: nothing), the user's member bytes, `1` to append a change, the
/// change stream's length bound, the change's instant (ms), and the fencing
/// token the write is made under (empty for a request's write).
///
/// Answers `{"ok", change id or ""}`, `{"conflict", current value or ""}`,
/// or `{"fenced"}`.
pub const APPLY: &str = r"#!lua
if ARGV[9] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[9] then
  return {'fenced'}
end
local current = redis.call('GET', KEYS[1])
local version = ''
if current then version = string.sub(current, 1, 8) end
if version ~= ARGV[1] then
  return {'conflict', current or ''}
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2]) end
if ARGV[4] == 'lt' then
  redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[5])
elseif ARGV[4] == 'set' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
elseif ARGV[4] == 'rem' then
  redis.call('ZREM', KEYS[2], ARGV[5])
end
if ARGV[6] == '1' then
  local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '0-*',
    'k', ARGV[5], 't', ARGV[8], 'f', string.sub(ARGV[2], 9))
  return {'ok', id}
end
return {'ok', ''}
";

/// A user joins its tenant's index unless the tenant holds its bound of
/// users already.
///
/// KEYS: the tenant's index. ARGV: the user's member bytes, the bound.
///
/// Answers 1 when the user was in the index already, 2 when it was added,
/// 0 when the tenant is at its bound (nothing is added).
pub const ADMIT_USER: &str = r"#!lua
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
return 2
";

/// Many ticks of one partition under its lease, each a compare-and-set.
///
/// KEYS: due, changes, fence, then each user's facts. ARGV: the fencing
/// token, the change stream's length bound, the instant (ms), then six per
/// user: the expected version, the new value (empty: unchanged), the due
/// instant, `set` or `rem`, the member bytes, `1` to append a change.
///
/// Answers `{"fenced"}`, or `{"ok", ...}` with one answer per user: `c` for
/// a conflict (the user changed since it was read; tick it again alone),
/// the change's id, or empty.
pub const TICK_ALL: &str = r"#!lua
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return {'fenced'}
end
local out = {'ok'}
for i = 1, #KEYS - 3 do
  local b = 3 + (i - 1) * 6
  local key = KEYS[3 + i]
  local current = redis.call('GET', key)
  local version = ''
  if current then version = string.sub(current, 1, 8) end
  if version ~= ARGV[b + 1] then
    out[#out + 1] = 'c'
  else
    if ARGV[b + 2] ~= '' then redis.call('SET', key, ARGV[b + 2]) end
    if ARGV[b + 4] == 'set' then
      redis.call('ZADD', KEYS[1], ARGV[b + 3], ARGV[b + 5])
    else
      redis.call('ZREM', KEYS[1], ARGV[b + 5])
    end
    if ARGV[b + 6] == '1' then
      out[#out + 1] = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-*',
        'k', ARGV[b + 5], 't', ARGV[3], 'f', string.sub(ARGV[b + 2], 9))
    else
      out[#out + 1] = ''
    end
  end
end
return out
";

/// Takes or renews a partition's lease.
///
/// KEYS: lease, fence. ARGV: the node, the lease's length (ms; 0 for a
/// lease that never lapses). Answers the fencing token, or nil when another
/// node holds the lease.
pub const LEASE: &str = r"#!lua
local current = redis.call('GET', KEYS[1])
if current then
  local holder, fence = string.match(current, '^(.*)/(%d+)$')
  if holder == ARGV[1] and redis.call('GET', KEYS[2]) == fence then
    if ARGV[2] == '0' then
      redis.call('PERSIST', KEYS[1])
    else
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
    end
    return tonumber(fence)
  end
  return false
end
local fence = redis.call('INCR', KEYS[2])
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1] .. '/' .. fence)
else
  redis.call('SET', KEYS[1], ARGV[1] .. '/' .. fence, 'PX', ARGV[2])
end
return fence
";

/// Gives a lease up, if it is still the one held.
///
/// KEYS: lease, fence. ARGV: the fencing token. Answers 1 if released.
pub const RELEASE: &str = r"#!lua
local current = redis.call('GET', KEYS[1])
if current and redis.call('GET', KEYS[2]) == ARGV[1]
    and string.match(current, '/(%d+)$') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Takes the users due in a partition under its lease: they are moved to a
/// retry instant rather than removed, so that a node dying between taking
/// and ticking them loses nothing (the tick files the exact next instant).
///
/// KEYS: due, fence. ARGV: the fencing token, now (ms), the limit, the
/// retry instant (ms). Answers the members, or nil when fenced.
pub const TAKE_DUE: &str = r"#!lua
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[4], member)
end
return due
";

/// Raises marks, never lowers them.
///
/// KEYS: the subscription's marks. ARGV: user, sequence, user, sequence...
pub const RAISE_MARKS: &str = r"#!lua
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if not current or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
";

/// Takes the subscription timers due, each by exactly one node.
///
/// KEYS: timers. ARGV: now (ms). Answers member, score, member, score...
pub const TAKE_TIMERS: &str = r"#!lua
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'WITHSCORES')
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
end
return due
";

/// Moves the shared manual clock forward, never back.
///
/// KEYS: clock. ARGV: the instant (ms). Answers the clock's instant.
pub const CLOCK: &str = r"#!lua
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
return current
";

/// Takes up to `want` requests from one throttling limit: GCRA, the
/// algorithm governor implements in process, on Redis's own clock (so that
/// the nodes' clocks do not matter), in microseconds.
///
/// KEYS: the limit's theoretical arrival time. ARGV: the emission interval
/// (the period divided by the limit, µs), the burst (the limit), how many
/// requests to take. Answers `{taken, retry}`: `taken` requests were
/// granted (at most `want`, fewer near the limit); with none, `retry` is
/// how long (µs) until one would be.
pub const THROTTLE: &str = r"#!lua
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = math.floor((burst * emission - (tat - now)) / emission)
local taken = math.min(want, free)
if taken < 1 then
  return {0, tat - now - (burst - 1) * emission}
end
tat = tat + taken * emission
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {taken, 0}
";

/// Every script, compiled once.
#[derive(Debug)]
pub struct Scripts {
    pub apply: Script,
    pub admit_user: Script,
    pub tick_all: Script,
    pub lease: Script,
    pub release: Script,
    pub take_due: Script,
    pub raise_marks: Script,
    pub take_timers: Script,
    pub clock: Script,
    pub throttle: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            apply: Script::new(APPLY),
            admit_user: Script::new(ADMIT_USER),
            tick_all: Script::new(TICK_ALL),
            lease: Script::new(LEASE),
            release: Script::new(RELEASE),
            take_due: Script::new(TAKE_DUE),
            raise_marks: Script::new(RAISE_MARKS),
            take_timers: Script::new(TAKE_TIMERS),
            clock: Script::new(CLOCK),
            throttle: Script::new(THROTTLE),
        }
    }
}

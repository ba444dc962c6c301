//! How many malloc arenas the node uses.
//!
//! glibc's malloc gives a thread that finds the arenas busy one of its own, up to 8 per core.
//! The node runs many more threads than cores (tokio's workers, the routers, the shard workers,
//! sled's pool), so a connection's buffers end up spread over many arenas, memory freed in one
//! cannot serve another, and each arena other than the first grows its heap a page at a time
//! with an `mprotect` call. Measured in a storm of 10,000 TLS devices (docs/BENCHMARKS-HISTORY.md):
//! with one arena per core the node held 10-13 KiB per connection instead of 20, took 40% fewer
//! page faults and 7,000-14,000 `mprotect` calls instead of 42,000-44,000.

/// The arena limit for `cores` cores: one per core, and at least 2 (with a single arena every
/// thread shares one malloc lock, and two of six half-load runs had a p99 of 180 ms), unless
/// the operator chose one with `MALLOC_ARENA_MAX` or
/// `GLIBC_TUNABLES=glibc.malloc.arena_max=N` (given here as `env`), which then stands.
pub fn arena_limit(env: impl Fn(&str) -> Option<String>, cores: usize) -> Option<usize> {
    let chosen = env("MALLOC_ARENA_MAX").is_some()
        || env("GLIBC_TUNABLES").is_some_and(|t| t.contains("malloc.arena_max"));
    (!chosen).then_some(cores.max(2))
}

/// Applies [`arena_limit`] for this process. Call it first in `main`, before any thread starts:
/// arenas already made stay.
pub fn limit_arenas() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    if let Some(limit) = arena_limit(|name| std::env::var(name).ok(), cores) {
        set_arena_max(limit);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(limit: usize) {
    let limit = libc::c_int::try_from(limit).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets one of malloc's parameters, a plain integer; glibc takes its
    // own lock for it. It has no pointer arguments and no precondition.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, limit);
    }
}

/// Other allocators (musl, other systems) have no such setting.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_limit: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn one_arena_per_core_and_never_fewer_than_two() {
        assert_eq!(arena_limit(env(&[]), 2), Some(2));
        assert_eq!(arena_limit(env(&[]), 16), Some(16));
        assert_eq!(arena_limit(env(&[]), 1), Some(2));
    }

    #[test]
    fn an_operators_choice_stands() {
        assert_eq!(arena_limit(env(&[("MALLOC_ARENA_MAX", "8")]), 2), None);
        let tunables = [(
            "GLIBC_TUNABLES",
            "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4",
        )];
        assert_eq!(arena_limit(env(&tunables), 2), None);
        let other = [("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")];
        assert_eq!(arena_limit(env(&other), 2), Some(2));
    }
}

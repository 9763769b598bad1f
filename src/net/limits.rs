//! File descriptors: the soft limit raised to the hard one at start (the common soft limit of 1,024 is
//! far below what a proxy needs), and the connection caps checked against it, so that a flood meets the
//! cap's clear refusal instead of `EMFILE` everywhere.

/// File descriptors kept back for the stores, the logs and reserve files outside any connection.
const HEADROOM: u64 = 256;

/// File descriptors one proxy connection may hold: the client's, the origin's and a reserve body's.
const PER_PROXY_CONNECTION: u64 = 3;

/// Raises this process's soft limit on open files to its hard limit. Returns the soft limit in force
/// afterwards (the old one if raising failed, which is logged).
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open files limit");
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(from = limit.rlim_cur, to = limit.rlim_max, "raised the open files limit");
            return limit.rlim_max;
        }
        tracing::warn!(error = %std::io::Error::last_os_error(), soft = limit.rlim_cur, "cannot raise the open files limit");
    }
    limit.rlim_cur
}

/// The connection caps of both listeners, fitted to the open files limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBudget {
    pub proxy: usize,
    pub api: usize,
}

impl FileBudget {
    /// The caps asked for, lowered (with a warning) so that both listeners at their caps stay within
    /// `open_files`: the API's cap first, then the proxy's from what is left.
    pub fn fit(proxy: usize, api: usize, open_files: u64) -> Self {
        let usable = open_files.saturating_sub(HEADROOM);
        let api_fit = usize::try_from((usable / 4).min(api as u64)).unwrap_or(api).max(1);
        let left = usable.saturating_sub(api_fit as u64);
        let proxy_fit = usize::try_from((left / PER_PROXY_CONNECTION).min(proxy as u64)).unwrap_or(proxy).max(1);
        if proxy_fit < proxy || api_fit < api {
            tracing::warn!(
                open_files,
                proxy_asked = proxy,
                proxy = proxy_fit,
                api_asked = api,
                api = api_fit,
                "the open files limit is too low for the connection caps asked for; lowered them"
            );
        }
        Self { proxy: proxy_fit, api: api_fit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_asked_for_are_kept_when_they_fit() {
        assert_eq!(FileBudget::fit(10_000, 256, 1 << 20), FileBudget { proxy: 10_000, api: 256 });
    }

    #[test]
    fn caps_are_lowered_to_fit_a_small_limit() {
        let fit = FileBudget::fit(10_000, 256, 1024);
        assert_eq!(fit.api, 192);
        assert_eq!(fit.proxy, (1024 - 256 - 192) / 3);
        assert!(fit.proxy as u64 * 3 + fit.api as u64 + HEADROOM <= 1024);
    }

    #[test]
    fn a_limit_below_the_headroom_still_leaves_one_connection_each() {
        assert_eq!(FileBudget::fit(10, 10, 100), FileBudget { proxy: 1, api: 1 });
    }
}

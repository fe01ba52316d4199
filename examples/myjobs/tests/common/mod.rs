//! A stock node for the examples' tests: the `ppserver` library with the
//! built-in jobs only, in the test's process, with its own cache directory.

use jobs as _; // the built-in jobs, as the stock node has them

/// A running stock node, its key as text, and its cache directory
/// (removed by [`StockNode::stop`]).
pub(crate) struct StockNode {
    pub(crate) node: ppserver::Running,
    pub(crate) key: String,
    cache: std::path::PathBuf,
}

impl StockNode {
    /// Starts one with 2 workers; `name` tells its cache directory apart.
    pub(crate) fn start(name: &str) -> Self {
        let cache = std::env::temp_dir().join(format!("pp-{name}-test-{}", std::process::id()));
        let key = ppclient::Key::generate().unwrap().to_text();
        let config = ppserver::Config {
            port: 0,
            workers: 2,
            keys: Some(ppclient::KeySet::parse(&key).unwrap()),
            cache_dir: Some(cache.clone()),
            ..ppserver::Config::default()
        };
        let node = ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap();
        StockNode { node, key, cache }
    }

    /// Its address, for a client.
    pub(crate) fn addr(&self) -> String {
        self.node.local_addr().to_string()
    }

    /// Stops it and removes its cache.
    pub(crate) fn stop(self) {
        self.node.stop();
        let _ = std::fs::remove_dir_all(&self.cache);
    }
}

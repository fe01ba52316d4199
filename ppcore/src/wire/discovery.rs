//! Finding nodes on the local network: the probe a client broadcasts (UDP)
//! and a node's answer, naming its TCP port.

/// The default TCP (and discovery UDP) port of a node.
pub const DEFAULT_PORT: u16 = 60000;

/// What a client broadcasts (UDP) to find nodes.
pub const DISCOVERY_PROBE: &[u8] = b"pp-discover 1";
const DISCOVERY_REPLY: &str = "pp-node 1 ";

/// A node's answer to a discovery probe: its TCP port.
pub fn discovery_reply(port: u16) -> String {
    format!("{DISCOVERY_REPLY}{port}")
}

/// The TCP port in a node's discovery answer; `None` for anything else.
pub fn parse_discovery_reply(bytes: &[u8]) -> Option<u16> {
    std::str::from_utf8(bytes)
        .ok()?
        .strip_prefix(DISCOVERY_REPLY)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_reply_round_trips() {
        assert_eq!(
            parse_discovery_reply(discovery_reply(60000).as_bytes()),
            Some(60000)
        );
        assert_eq!(parse_discovery_reply(b"pp-node 1 99999"), None);
        assert_eq!(parse_discovery_reply(b"\xff\xfe"), None);
    }
}

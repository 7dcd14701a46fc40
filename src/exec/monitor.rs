//! Feeding `MONITOR` ([`crate::monitor`]): a request's raw bytes to the
//! line every monitor receives. Kept apart from `crate::monitor`, a leaf
//! the statistics hold, because it needs the protocol parsers.

use std::net::SocketAddr;

use crate::monitor::{Monitors, format_line, hidden};
use crate::protocol::reply::Proto;
use crate::protocol::resp;

/// Shows the request `frame` (its raw bytes, in `proto`) run by the client
/// at `addr` to every monitor, unless the command is [`hidden`]. Text
/// protocol requests appear as their words (split at spaces and tabs).
pub fn feed(monitors: &Monitors, addr: &SocketAddr, frame: &[u8], proto: Proto) {
    let Some(args) = args_of(frame, proto) else {
        return;
    };
    let Some(name) = args.first() else { return };
    if hidden(name, args.get(1).copied()) {
        return;
    }
    let mut line = Vec::with_capacity(64 + frame.len());
    format_line(&mut line, crate::clock::since_epoch(), addr, &args);
    monitors.publish(&line);
}

/// The arguments of the request `frame` (its raw bytes, in `proto`):
/// RESP bulk strings, or the words of a text request (split at spaces and
/// tabs). `None` for a frame that is not one complete RESP request.
pub fn args_of(frame: &[u8], proto: Proto) -> Option<Vec<&[u8]>> {
    match proto {
        Proto::Resp => {
            let mut spans = Vec::new();
            match resp::frame(frame, &mut spans) {
                resp::Frame::Complete(_) => Some(
                    spans
                        .iter()
                        .map(|&(s, e)| &frame[s as usize..e as usize])
                        .collect(),
                ),
                _ => None,
            }
        }
        Proto::Text => Some(
            frame
                .split(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .filter(|w| !w.is_empty())
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::monitor::CountWakes;

    #[test]
    fn feed_shows_resp_and_text_requests() {
        let m = Monitors::default();
        let w = Arc::new(CountWakes(AtomicUsize::new(0)));
        let f = m.add(1, 0, w);
        let addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
        feed(&m, &addr, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", Proto::Resp);
        feed(&m, &addr, b"SET k  v\tw\r\n", Proto::Text);
        feed(
            &m,
            &addr,
            b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$1\r\n*\r\n",
            Proto::Resp,
        );
        feed(&m, &addr, b"AUTH secret\r\n", Proto::Text);
        let mut out = Vec::new();
        assert!(f.drain_into(&mut out));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            lines,
            [
                "[0 10.0.0.1:7] \"GET\" \"k\"",
                "[0 10.0.0.1:7] \"SET\" \"k\" \"v\" \"w\"",
                "[0 10.0.0.1:7] \"AUTH\" \"(redacted)\"",
            ]
        );
        assert!(text.starts_with('+'));
    }
}

//! A copy of a streamed request body, up to a cap, handed over when the body has been read
//! whole (for `mirror-target`). Copied, not shared: the body's frames can keep far larger
//! read buffers alive than their own length.

use bytes::Bytes;
use tokio::sync::oneshot;

pub struct Tee {
    copy: Vec<u8>,
    max: usize,
    /// `None` once the body passed `max` or was handed over: the waiting side sees the
    /// sender dropped and gives up.
    to: Option<oneshot::Sender<Bytes>>,
}

impl Tee {
    /// A copy of up to `max` bytes, sent to `to` when the body ends.
    pub fn new(max: usize, to: oneshot::Sender<Bytes>) -> Self {
        Self {
            copy: Vec::new(),
            max,
            to: Some(to),
        }
    }

    /// One more piece of the body; `end` when it was the last.
    pub(super) fn push(&mut self, data: &[u8], end: bool) {
        if self.to.is_none() {
            return;
        }
        if data.len() > self.max - self.copy.len() {
            self.to = None;
            self.copy = Vec::new();
            return;
        }
        self.copy.extend_from_slice(data);
        if end {
            self.end();
        }
    }

    pub(super) fn end(&mut self) {
        if let Some(to) = self.to.take() {
            let _ = to.send(Bytes::from(std::mem::take(&mut self.copy)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_up_to_the_cap_and_hands_over_at_the_end() {
        let (to, mut got) = oneshot::channel();
        let mut t = Tee::new(8, to);
        t.push(b"abc", false);
        assert!(got.try_recv().is_err(), "not before the end");
        t.push(b"defgh", true);
        assert_eq!(got.try_recv().unwrap(), Bytes::from_static(b"abcdefgh"));

        let (to, mut got) = oneshot::channel();
        let mut t = Tee::new(8, to);
        t.push(b"abcde", false);
        t.push(b"fghi", false);
        t.end();
        assert!(
            matches!(got.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "past the cap: nothing"
        );
    }
}

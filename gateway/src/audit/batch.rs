//! Encoded lines held by the writer — not yet written, or written but not yet synced — with the
//! chain position after each, so that a prefix of whole records can be written, rotated or put back.

use std::collections::VecDeque;

use super::chain::Position;

/// Whole lines, in chain order.
#[derive(Debug, Default)]
pub(super) struct Batch {
    buf: Vec<u8>,
    /// End offset in `buf` and position of each line.
    marks: VecDeque<(usize, Position)>,
}

impl Batch {
    /// Appends one line (with its newline) that brings the chain to `pos`.
    pub(super) fn push(&mut self, line: &[u8], pos: Position) {
        self.buf.extend_from_slice(line);
        self.marks.push_back((self.buf.len(), pos));
    }

    /// Number of records.
    pub(super) fn records(&self) -> usize {
        self.marks.len()
    }

    /// Whether it holds nothing.
    pub(super) fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// The bytes of every line.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The position after the last line.
    pub(super) fn last(&self) -> Option<&Position> {
        self.marks.back().map(|(_, p)| p)
    }

    /// Length in bytes of the longest run of whole lines from the front that fits in `room` bytes
    /// (0 when not even the first does).
    pub(super) fn fitting(&self, room: u64) -> usize {
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        self.marks
            .iter()
            .map(|(end, _)| *end)
            .take_while(|end| *end <= room)
            .last()
            .unwrap_or(0)
    }

    /// Length in bytes of the first line (0 when empty).
    pub(super) fn first_len(&self) -> usize {
        self.marks.front().map_or(0, |(end, _)| *end)
    }

    /// Removes and returns the first `n` bytes, which must end at a line boundary.
    pub(super) fn take_front(&mut self, n: usize) -> Batch {
        if n >= self.buf.len() {
            return std::mem::take(self);
        }
        let mut front = Batch::default();
        while let Some((end, _)) = self.marks.front()
            && *end <= n
        {
            if let Some(m) = self.marks.pop_front() {
                front.marks.push_back(m);
            }
        }
        front.buf = self.buf.drain(..n).collect();
        for (end, _) in &mut self.marks {
            *end -= n;
        }
        front
    }

    /// Appends every line of `other`.
    pub(super) fn append(&mut self, other: Batch) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.marks
            .extend(other.marks.into_iter().map(|(end, p)| (end + base, p)));
    }

    /// Puts `front` before every line held.
    pub(super) fn prepend(&mut self, mut front: Batch) {
        front.append(std::mem::take(self));
        *self = front;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(seq: u64) -> Position {
        Position {
            seq,
            hash: format!("h{seq}"),
        }
    }

    fn three() -> Batch {
        let mut b = Batch::default();
        b.push(b"aa\n", pos(1));
        b.push(b"bbbb\n", pos(2));
        b.push(b"c\n", pos(3));
        b
    }

    #[test]
    fn fitting_counts_whole_lines_only() {
        let b = three();
        assert_eq!(b.fitting(2), 0);
        assert_eq!(b.fitting(3), 3);
        assert_eq!(b.fitting(7), 3);
        assert_eq!(b.fitting(8), 8);
        assert_eq!(b.fitting(u64::MAX), 10);
        assert_eq!(b.first_len(), 3);
    }

    #[test]
    fn take_front_then_prepend_restores_lines_and_positions() {
        let mut b = three();
        let front = b.take_front(8);
        assert_eq!(front.bytes(), b"aa\nbbbb\n");
        assert_eq!(front.last(), Some(&pos(2)));
        assert_eq!(b.bytes(), b"c\n");
        assert_eq!(b.fitting(2), 2);
        b.prepend(front);
        assert_eq!(b.bytes(), b"aa\nbbbb\nc\n");
        assert_eq!(b.records(), 3);
        assert_eq!(b.last(), Some(&pos(3)));
        assert_eq!(b.fitting(8), 8);
        let all = b.take_front(10);
        assert!(b.is_empty());
        assert_eq!(all.records(), 3);
    }
}

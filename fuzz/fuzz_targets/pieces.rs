//! Shared by the targets of incremental parsers: `wire` fed to `parse` in growing prefixes of
//! `piece` more bytes each, as reads deliver them. `Ok(None)` means "more bytes needed"; once
//! anything else is answered, every longer prefix must give the same answer (a parser decides
//! on what it has seen, never on what comes after). `check` sees every answer.

use std::fmt::Debug;

pub fn fed_in_pieces<T: PartialEq + Debug, E: PartialEq + Debug>(
    data: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<T>, E>,
    mut check: impl FnMut(&[u8], &Result<Option<T>, E>),
) -> Option<Result<Option<T>, E>> {
    let (&split, wire) = data.split_first()?;
    let piece = usize::from(split).max(1);
    let mut end = 0;
    let mut decided = None;
    while end < wire.len() {
        end = (end + piece).min(wire.len());
        let got = parse(&wire[..end]);
        check(&wire[..end], &got);
        match (&decided, got) {
            (None, Ok(None)) => {}
            (None, d) => decided = Some(d),
            (Some(d), now) => assert_eq!(d, &now, "answer changed at {end} bytes"),
        }
    }
    decided
}

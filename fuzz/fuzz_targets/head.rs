//! `listener::HeadScan` on arbitrary bytes, fed in arbitrary pieces.
//!
//! The listener hands a head to pingora when the scanner says it is complete, and pingora
//! parses it with httparse; if the two disagreed about where a head ends, pingora would read on
//! by itself, outside the listener's time bound. So: wherever the scanner says a head ends,
//! httparse either ends it at the same byte or refuses it; where the scanner says more is
//! needed, httparse never has a complete head. And feeding the same bytes in pieces never
//! changes the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::listener::{HeadScan, Oversized, Progress, MAX_FIELDS};

const NO_LIMIT: usize = usize::MAX;

fn in_pieces(input: &[u8], step: usize, max: usize) -> Progress {
    let mut scan = HeadScan::default();
    let mut end = 0;
    loop {
        end = (end + step).min(input.len());
        let progress = scan.advance(&input[..end], max);
        if progress != Progress::Partial || end == input.len() {
            return progress;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = HeadScan::default().advance(input, NO_LIMIT);
    assert_eq!(in_pieces(input, usize::from(step).max(1), NO_LIMIT), whole);

    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let parsed = httparse::Request::new(&mut fields).parse(input);
    match whole {
        Progress::Complete(end) => {
            assert!(end <= input.len());
            match parsed {
                Ok(httparse::Status::Complete(at)) => assert_eq!(at, end, "ends differ"),
                Ok(httparse::Status::Partial) => panic!("httparse wants more after {end}"),
                Err(_) => {}
            }
            // A limit below the head's size refuses it; at its size, it passes.
            assert_eq!(in_pieces(input, 7, end), whole);
            if end > 0 {
                assert!(matches!(
                    in_pieces(input, 7, end - 1),
                    Progress::Oversized(Oversized::Head | Oversized::RequestLine)
                ));
            }
        }
        Progress::Partial => {
            assert!(
                !matches!(parsed, Ok(httparse::Status::Complete(_))),
                "httparse found a complete head the scanner did not"
            );
        }
        Progress::Oversized(Oversized::Fields) => {
            assert!(parsed.is_err(), "{MAX_FIELDS}+ fields parsed: {parsed:?}");
        }
        Progress::Oversized(other) => panic!("oversized without a limit: {other:?}"),
    }
});

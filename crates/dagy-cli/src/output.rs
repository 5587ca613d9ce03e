//! Standard output for results. A reader that goes away (`dagy runs | head`) ends the process
//! quietly, as it ends any Unix filter, instead of a panic.

use std::io::Write;

/// Writes one line on standard output.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    end_on_error(writeln!(stdout, "{args}"));
}

/// Writes `value` as indented JSON and a newline on standard output, as it is serialized: a
/// run of 100,000 tasks is never held as one JSON text or `Value`.
pub fn json(value: &impl serde::Serialize) {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(stdout))
        .and_then(|()| stdout.flush());
    end_on_error(written);
}

/// Ends the process after a failed write: quietly when the reader went away.
fn end_on_error(written: std::io::Result<()>) {
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for results: see [`line`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use out;

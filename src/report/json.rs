//! JSON lines: one object per snapshot, for scripts.
use std::io::{self, Write};

use super::snapshot::{Printer, Snapshot};

pub struct JsonPrinter {
    pub(super) out: Box<dyn Write + Send>,
}

impl Printer for JsonPrinter {
    fn print(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, snapshot)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

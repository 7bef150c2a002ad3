//! scan tests (filled below)

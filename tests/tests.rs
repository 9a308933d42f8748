//! Integration tests of the tsq facade: one binary, one module per topic.

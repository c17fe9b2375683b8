//! Placeholder: the operator is being written.

//! Scanning a whole cache directory for corruption (placeholder: being written).

//! dstorm — distributed one-sided remote memory.

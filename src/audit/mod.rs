//! audit (under construction in this commit).

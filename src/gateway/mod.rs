//! gateway (under construction in this commit).

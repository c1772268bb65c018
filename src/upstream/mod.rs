//! upstream (under construction in this commit).

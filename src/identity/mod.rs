//! identity (under construction in this commit).

//! buildstream-origin

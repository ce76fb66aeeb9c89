//! buildstream-edge

//! buildstream-studio

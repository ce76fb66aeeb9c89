//! buildstream-user

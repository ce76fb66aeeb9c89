//! Each role's start-up: what it binds, what it registers, how it stops.

pub mod control;
pub mod control_link;
pub mod dev;
pub mod edge;
pub mod mesh_sources;
pub mod origin;

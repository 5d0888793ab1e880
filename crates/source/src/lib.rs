//! lab8-source: reads OpenFoodFacts exports and live HTTP submissions into
//! the raw product stream, once per product code.

pub mod http;
pub mod input;
pub mod loader;

pub use input::{Rejection, SourceRecord};
pub use loader::{LoadSummary, Loader};

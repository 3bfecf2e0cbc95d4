//! Integration tests of the static half of `ivory certify`: the secret scanner on planted and
//! fake secrets, the static checks on a clean connector and on mutants of it (one broken rule
//! each), and the scanner on this repository's own tree.

mod mutants;
mod repo;
mod secrets;
mod statics;
mod support;

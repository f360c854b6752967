//! dify-gitops: run Dify Community Edition on Nutanix Kubernetes Platform the GitOps way.
//!
//! See `ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod exit;
pub mod identity;
pub mod init;
pub mod opsrepo;
pub mod overlay;
pub mod plugin_bundle;
pub mod report;
pub mod secret;
pub mod sops;
pub mod sync;
pub mod verify;

//! Anshin custom resource types.

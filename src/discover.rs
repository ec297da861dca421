//! Discover the config from the ECS instance metadata service (issue 6).

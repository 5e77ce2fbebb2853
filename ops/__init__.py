"""The use cases: plan, up, down, check, doctor, status. They compose the edges
(infra, cloud, bootstrap) over the core; the CLI calls them."""

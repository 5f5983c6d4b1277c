# dev: every merge to main deploys here. Small, and cheap to tear down.
environment                 = "dev"
vpc_cidr                    = "10.40.0.0/16"
deletion_protection_enabled = false
ecr_force_delete_enabled    = true
orchestrator_min_count      = 1
orchestrator_max_count      = 2
worker_min_count            = 2 # two, so replacing one never leaves the orchestrators nothing to dial
worker_max_count            = 4

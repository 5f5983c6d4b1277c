# staging: prod's shape at a smaller scale.
environment                 = "staging"
vpc_cidr                    = "10.41.0.0/16"
deletion_protection_enabled = false
ecr_force_delete_enabled    = true
orchestrator_min_count      = 1
orchestrator_max_count      = 4
worker_min_count            = 2
worker_max_count            = 4

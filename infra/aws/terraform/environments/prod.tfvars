# prod: deployed only through the `prod` GitHub environment (required reviewers), protected
# against deletion, two tasks of each service at least (one per availability zone).
environment                 = "prod"
vpc_cidr                    = "10.42.0.0/16"
deletion_protection_enabled = true
ecr_force_delete_enabled    = false
orchestrator_desired_count  = 2
worker_desired_count        = 2
orchestrator_min_count      = 2
orchestrator_max_count      = 10
worker_min_count            = 2
worker_max_count            = 20

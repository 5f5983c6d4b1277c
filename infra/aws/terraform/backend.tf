# State lives in S3, one object per environment, locked with an S3 lock file (use_lockfile:
# Terraform 1.10+, no DynamoDB lock table). The settings come at init, from the environment's
# file and the bucket scripts/bootstrap-state.sh made:
#
#   terraform init -backend-config=environments/dev.s3.tfbackend -backend-config=bucket=<bucket>
#
# A throwaway local state instead: a backend_override.tf with `terraform { backend "local" {} }`
# (git ignores it).
terraform {
  backend "s3" {}
}

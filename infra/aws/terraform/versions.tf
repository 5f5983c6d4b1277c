terraform {
  # 1.11+ for write-only arguments and ephemeral resources (secrets.tf: tokens never in the
  # state); 1.10+ for the S3 backend's lock file (backend.tf, use_lockfile); 1.9+ for variable
  # validations that refer to other variables.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # The S3 backend is in backend.tf (README.md, "Environments and state").
}

terraform {
  # 1.11+ for write-only arguments and ephemeral resources (secrets.tf: tokens never in the
  # state); 1.9+ already for variable validations that refer to other variables.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # No backend block: state is local until you add one (see README.md, "Remote state").
}

terraform {
  # 1.9+ for variable validations that refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # No backend block: state is local until you add one (see README.md, "Remote state").
}

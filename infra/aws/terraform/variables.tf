# --- Naming and placement -------------------------------------------------------------------

variable "project" {
  type        = string
  description = "Project name: the first part of every resource name (`<project>-...-<environment>`)."
  default     = "ghost-engine"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  type        = string
  description = "Environment name: the last part of every resource name, the orchestrator's ENVIRONMENT and the metrics' Environment dimension."
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lowercase letters or digits, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "AWS region for every resource."
  default     = "us-east-1"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for every resource (Project, Environment and ManagedBy are always set)."
  default     = {}
}

# --- Network -------------------------------------------------------------------------------

variable "vpc_id" {
  type        = string
  description = "An existing VPC to deploy into. null creates a VPC with public subnets (ALB, NAT gateway) and private subnets (tasks)."
  default     = null
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "With vpc_id: at least two public subnets in different AZs for the ALB. Ignored when the module creates the VPC."
  default     = []

  validation {
    condition     = var.vpc_id == null || length(var.public_subnet_ids) >= 2
    error_message = "With vpc_id set, give at least two public_subnet_ids (the ALB needs two AZs)."
  }
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "With vpc_id: subnets for the ECS tasks, with outbound HTTPS to AWS APIs (NAT or VPC endpoints). Ignored when the module creates the VPC."
  default     = []

  validation {
    condition     = var.vpc_id == null || length(var.private_subnet_ids) >= 1
    error_message = "With vpc_id set, give at least one private_subnet_ids entry for the ECS tasks."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the VPC the module creates (when vpc_id is null). Subnets are /24s carved from it."
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /20 or larger."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones (in var.region) the created VPC spans, one public and one private subnet in each. Listed, not looked up, so the subnets never move when AWS adds or impairs a zone."
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "availability_zones must list 2 to 4 zones (an ALB needs two)."
  }
}

# --- Load balancer -------------------------------------------------------------------------

variable "certificate_arn" {
  type        = string
  description = "ACM certificate ARN for an HTTPS listener on 443; port 80 then redirects to HTTPS. null serves plain HTTP on 80 only. Needs domain_name: no certificate can cover the ALB's own DNS name."
  default     = null

  validation {
    condition     = var.certificate_arn == null || var.domain_name != null
    error_message = "certificate_arn needs domain_name (and route53_zone_id): an ACM certificate cannot cover the ALB's amazonaws.com name, so https://<alb dns> would fail TLS."
  }
}

variable "domain_name" {
  type        = string
  description = "DNS name of the public API (e.g. api.example.com), created as a Route 53 alias of the ALB in route53_zone_id; alb_url then uses it. The certificate must cover it. null uses the ALB's own DNS name (plain HTTP only)."
  default     = null

  validation {
    condition     = var.domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name such as api.example.com."
  }
}

variable "route53_zone_id" {
  type        = string
  description = "Route 53 hosted zone (ID) that holds domain_name; required with domain_name."
  default     = null

  validation {
    condition     = (var.domain_name == null) == (var.route53_zone_id == null)
    error_message = "domain_name and route53_zone_id go together: set both or neither."
  }
}

variable "alb_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to reach the ALB."
  default     = ["0.0.0.0/0"]
}

# --- Services ------------------------------------------------------------------------------

variable "image_tag" {
  type        = string
  description = "Image tag of the first task-definition revision: the full 40-character commit SHA of an image already pushed to both ECR repositories (the pipeline tags images with the commit SHA and never pushes `latest` to IMMUTABLE repositories). Later revisions belong to the deploy pipeline; Terraform ignores them."

  validation {
    condition     = can(regex("^[0-9a-f]{40}$", var.image_tag))
    error_message = "image_tag must be a full 40-character lowercase commit SHA (git rev-parse HEAD), the tag the pipeline pushes; got \"${var.image_tag}\". Tags such as `latest` are never pushed to the IMMUTABLE repositories."
  }
}

variable "orchestrator_desired_count" {
  type        = number
  description = "Number of orchestrator tasks."
  default     = 1

  validation {
    condition     = var.orchestrator_desired_count >= 0 && floor(var.orchestrator_desired_count) == var.orchestrator_desired_count
    error_message = "orchestrator_desired_count must be a whole number >= 0."
  }
}

variable "worker_desired_count" {
  type        = number
  description = "Number of worker tasks. Two by default: replacing the only worker leaves the orchestrators nothing to dial while the new one starts."
  default     = 2

  validation {
    condition     = var.worker_desired_count >= 0 && floor(var.worker_desired_count) == var.worker_desired_count
    error_message = "worker_desired_count must be a whole number >= 0."
  }
}

variable "orchestrator_cpu" {
  type        = number
  description = "Fargate CPU units of an orchestrator task (256 = 0.25 vCPU)."
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.orchestrator_cpu)
    error_message = "orchestrator_cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384 (Fargate's CPU values)."
  }
}

variable "orchestrator_memory" {
  type        = number
  description = "Memory (MiB) of an orchestrator task: a value Fargate accepts with orchestrator_cpu (README.md, \"Task sizes\")."
  default     = 512

  # Fargate's table (Linux): a pair outside it passes plan and fails RegisterTaskDefinition.
  validation {
    condition = (
      var.orchestrator_cpu == 256 ? contains([512, 1024, 2048], var.orchestrator_memory) :
      var.orchestrator_cpu == 512 ? var.orchestrator_memory >= 1024 && var.orchestrator_memory <= 4096 && var.orchestrator_memory % 1024 == 0 :
      var.orchestrator_cpu == 1024 ? var.orchestrator_memory >= 2048 && var.orchestrator_memory <= 8192 && var.orchestrator_memory % 1024 == 0 :
      var.orchestrator_cpu == 2048 ? var.orchestrator_memory >= 4096 && var.orchestrator_memory <= 16384 && var.orchestrator_memory % 1024 == 0 :
      var.orchestrator_cpu == 4096 ? var.orchestrator_memory >= 8192 && var.orchestrator_memory <= 30720 && var.orchestrator_memory % 1024 == 0 :
      var.orchestrator_cpu == 8192 ? var.orchestrator_memory >= 16384 && var.orchestrator_memory <= 61440 && var.orchestrator_memory % 4096 == 0 :
      var.orchestrator_memory >= 32768 && var.orchestrator_memory <= 122880 && var.orchestrator_memory % 8192 == 0
    )
    error_message = "orchestrator_memory ${var.orchestrator_memory} is not a Fargate size for orchestrator_cpu ${var.orchestrator_cpu}. Fargate accepts: 256 -> 512, 1024, 2048; 512 -> 1024-4096; 1024 -> 2048-8192; 2048 -> 4096-16384 (steps of 1024); 4096 -> 8192-30720 (1024); 8192 -> 16384-61440 (4096); 16384 -> 32768-122880 (8192)."
  }
}

variable "worker_cpu" {
  type        = number
  description = "Fargate CPU units of an worker task (256 = 0.25 vCPU)."
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.worker_cpu)
    error_message = "worker_cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384 (Fargate's CPU values)."
  }
}

variable "worker_memory" {
  type        = number
  description = "Memory (MiB) of an worker task: a value Fargate accepts with worker_cpu (README.md, \"Task sizes\")."
  default     = 512

  # Fargate's table (Linux): a pair outside it passes plan and fails RegisterTaskDefinition.
  validation {
    condition = (
      var.worker_cpu == 256 ? contains([512, 1024, 2048], var.worker_memory) :
      var.worker_cpu == 512 ? var.worker_memory >= 1024 && var.worker_memory <= 4096 && var.worker_memory % 1024 == 0 :
      var.worker_cpu == 1024 ? var.worker_memory >= 2048 && var.worker_memory <= 8192 && var.worker_memory % 1024 == 0 :
      var.worker_cpu == 2048 ? var.worker_memory >= 4096 && var.worker_memory <= 16384 && var.worker_memory % 1024 == 0 :
      var.worker_cpu == 4096 ? var.worker_memory >= 8192 && var.worker_memory <= 30720 && var.worker_memory % 1024 == 0 :
      var.worker_cpu == 8192 ? var.worker_memory >= 16384 && var.worker_memory <= 61440 && var.worker_memory % 4096 == 0 :
      var.worker_memory >= 32768 && var.worker_memory <= 122880 && var.worker_memory % 8192 == 0
    )
    error_message = "worker_memory ${var.worker_memory} is not a Fargate size for worker_cpu ${var.worker_cpu}. Fargate accepts: 256 -> 512, 1024, 2048; 512 -> 1024-4096; 1024 -> 2048-8192; 2048 -> 4096-16384 (steps of 1024); 4096 -> 8192-30720 (1024); 8192 -> 16384-61440 (4096); 16384 -> 32768-122880 (8192)."
  }
}

variable "api_token_enabled" {
  type        = bool
  description = "Require a bearer token (API_TOKEN) on every public API call but /healthz, /readyz and /openapi.json. The token is generated in Secrets Manager (output api_token_secret_arn); clients read it from there."
  default     = false
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of both services."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR."
  }
}

variable "metrics_namespace" {
  type        = string
  description = "CloudWatch namespace of the orchestrator's EMF metrics (METRICS_NAMESPACE) and of the JobFailed alarm."
  default     = "GhostEngine"
}

# --- Data ----------------------------------------------------------------------------------

variable "jobs_table_name" {
  type        = string
  description = "Name of the DynamoDB jobs table. null means `<project>-jobs-<environment>`."
  default     = null
}

variable "deletion_protection_enabled" {
  type        = bool
  description = "Deletion protection on the jobs table and the ALB, and a 30-day recovery window on the token secrets (0 when false). Keep true for real environments; throwaway stacks set false."
  default     = true
}

# --- Container registry --------------------------------------------------------------------

variable "ecr_image_tag_mutability" {
  type        = string
  description = "Tag mutability of the ECR repositories. IMMUTABLE: a pushed tag (a commit SHA) can never point at another image. See ecr.tf about `latest`."
  default     = "IMMUTABLE"

  validation {
    condition     = contains(["IMMUTABLE", "MUTABLE"], var.ecr_image_tag_mutability)
    error_message = "ecr_image_tag_mutability must be IMMUTABLE or MUTABLE."
  }
}

variable "ecr_keep_image_count" {
  type        = number
  description = "ECR lifecycle: keep this many most recent images per repository (older ones expire). Bounds how far back a rollback can go."
  default     = 50

  validation {
    condition     = var.ecr_keep_image_count >= 1
    error_message = "ecr_keep_image_count must be at least 1."
  }
}

variable "ecr_untagged_expiry_days" {
  type        = number
  description = "ECR lifecycle: untagged images expire this many days after push."
  default     = 7

  validation {
    condition     = var.ecr_untagged_expiry_days >= 1
    error_message = "ecr_untagged_expiry_days must be at least 1."
  }
}

variable "ecr_force_delete_enabled" {
  type        = bool
  description = "Let `terraform destroy` delete ECR repositories that still hold images."
  default     = false
}

# --- Logs and alarms -----------------------------------------------------------------------

variable "log_retention_days" {
  type        = number
  description = "Retention (days) of the services' CloudWatch log groups."
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "alarm_topic_enabled" {
  type        = bool
  description = "Create an SNS topic that every alarm notifies (on ALARM and on OK). Subscribe to it yourself."
  default     = false
}

variable "alb_5xx_threshold" {
  type        = number
  description = "Alarm when the ALB answers more than this many 5XX responses (its own plus the orchestrator's) in one minute."
  default     = 5
}

variable "job_failed_threshold" {
  type        = number
  description = "Alarm when more than this many jobs fail (JobFailed metric) in one minute. 0 alarms on any failure."
  default     = 0
}

# --- CI/CD ---------------------------------------------------------------------------------

variable "github_repository" {
  type        = string
  description = "GitHub repository (`owner/name`) whose workflows may assume the deploy role. Required: it goes into the role's OIDC trust policy, so there is no default."

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9_.-]{1,100}$", var.github_repository))
    error_message = "github_repository must be owner/name (owner: letters, digits and hyphens; name: letters, digits, '.', '_', '-'; no wildcards), got \"${var.github_repository}\"."
  }
}

variable "github_environment" {
  type        = string
  description = "GitHub environment whose deploy jobs may assume the role: the trust policy's subject is `repo:<github_repository>:environment:<this>`. null means var.environment. Which branches may deploy is then the environment's deployment-branch rule in GitHub (README.md)."
  default     = null

  validation {
    condition     = var.github_environment == null ? true : can(regex("^[A-Za-z0-9_.-]{1,255}$", var.github_environment))
    error_message = "github_environment must be a GitHub environment name: letters, digits, '.', '_', '-'."
  }
}

variable "github_actions_role_name" {
  type        = string
  description = "Name of the IAM role GitHub Actions assumes through OIDC. null means `<project>-github-actions-<environment>`. To adopt an existing role (e.g. `github-actions-role`), set its name and `terraform import aws_iam_role.github_actions <name>` before applying (README.md)."
  default     = null

  validation {
    condition     = var.github_actions_role_name == null ? true : can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.github_actions_role_name))
    error_message = "github_actions_role_name must be an IAM role name: 1-64 letters, digits or +=,.@_-."
  }
}

variable "github_oidc_provider_arn" {
  type        = string
  description = "ARN of the account's GitHub OIDC provider. It is account-wide, shared by every repository and stack, so this module never creates or destroys it: ../account creates it once per account. null means the provider's fixed ARN, arn:<partition>:iam::<account>:oidc-provider/token.actions.githubusercontent.com."
  default     = null
}

# --- Scaling (autoscaling.tf) ---------------------------------------------------------------

variable "autoscaling_enabled" {
  type        = bool
  description = "Scale both ECS services between their min and max task counts (target tracking); false keeps the desired counts fixed."
  default     = true
}

variable "orchestrator_min_count" {
  type        = number
  description = "Fewest orchestrator tasks auto scaling keeps."
  default     = 1
}

variable "orchestrator_max_count" {
  type        = number
  description = "Most orchestrator tasks auto scaling starts."
  default     = 4

  validation {
    condition     = var.orchestrator_max_count >= var.orchestrator_min_count && var.orchestrator_min_count >= 1
    error_message = "orchestrator_max_count must be >= orchestrator_min_count, and orchestrator_min_count >= 1."
  }
}

variable "worker_min_count" {
  type        = number
  description = "Fewest worker tasks auto scaling keeps: at least 2, so replacing one never leaves the orchestrators nothing to dial (Cloud Map keeps a stopped worker's address for its DNS TTL)."
  default     = 2

  validation {
    condition     = var.worker_min_count >= 2
    error_message = "worker_min_count must be at least 2: with one worker, its replacement leaves the orchestrators nothing to dial."
  }
}

variable "worker_max_count" {
  type        = number
  description = "Most worker tasks auto scaling starts."
  default     = 4

  validation {
    condition     = var.worker_max_count >= var.worker_min_count && var.worker_min_count >= 1
    error_message = "worker_max_count must be >= worker_min_count, and worker_min_count >= 1."
  }
}

variable "orchestrator_requests_per_task_target" {
  type        = number
  description = "ALB requests per orchestrator task per minute that auto scaling aims at (ALBRequestCountPerTarget)."
  default     = 6000
}

variable "orchestrator_dispatch_busy_target_percent" {
  type        = number
  description = "Share of an orchestrator's dispatch threads (MAX_CONCURRENT_JOBS) in use that auto scaling aims at (DispatchSlotsBusyPercent)."
  default     = 70
}

variable "worker_jobs_per_task_target" {
  type        = number
  description = "Jobs running per worker task that auto scaling aims at; a worker runs at most its MAX_CONCURRENT_JOBS (16) at once."
  default     = 12
}

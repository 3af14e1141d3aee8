# ---- naming -------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (ALB, target group, ECS, ElastiCache, IAM, logs)."
  type        = string
  default     = "floodgate"

  validation {
    # ALB and target group names allow 32 characters; "<name>-redis" must suit ElastiCache too.
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}$", var.name))
    error_message = "name: lowercase letters, digits and '-', starting with a letter, at most 23 characters."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

# ---- network ------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC that holds the ALB, the ECS tasks and the Redis cluster."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the ALB, in at least two availability zones (public ones unless internal = true)."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "public_subnet_ids: an ALB needs subnets in at least two availability zones."
  }
}

variable "private_subnet_ids" {
  description = "Subnets of the ECS tasks and of ElastiCache. The tasks need a route to ECR and CloudWatch Logs (a NAT gateway or VPC endpoints) to pull the image and ship logs."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids: give at least two availability zones, so that a zone's loss leaves tasks and Redis replicas."
  }
}

variable "trusted_proxy_cidrs" {
  description = "floodgate's trusted_proxies: the addresses the ALB connects to the tasks from. Empty (the default) means the IPv4 CIDR blocks of public_subnet_ids, looked up; give them here when those subnets are created in the same apply (their CIDRs are unknown at plan time)."
  type        = list(string)
  default     = []
}

variable "internal" {
  description = "An internal ALB (reachable only inside the VPC) instead of an internet-facing one."
  type        = bool
  default     = false
}

variable "allowed_ingress_ipv4_cidrs" {
  description = "Who may reach the ALB on 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# ---- TLS at the ALB -----------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener (in the ALB's region)."
  type        = string
}

variable "ssl_policy" {
  description = "Security policy of the HTTPS listener: TLS 1.3 and 1.2 only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "alb_idle_timeout" {
  description = "Seconds the ALB keeps an idle connection open. floodgate's server.idle_timeout is set 15 s longer, so the ALB, not floodgate, closes idle keep-alive connections (the other way round a request can meet a closing connection and fail with 502)."
  type        = number
  default     = 60
}

variable "deletion_protection" {
  description = "Refuse to delete the ALB until this is turned off."
  type        = bool
  default     = false
}

# ---- floodgate on ECS Fargate -------------------------------------------------------------------

variable "container_image" {
  description = "floodgate image built from deploy/docker/Dockerfile, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/floodgate:0.1.0."
  type        = string
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: the architecture the image was built for."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture: X86_64 or ARM64."
  }
}

variable "task_cpu" {
  description = "CPU units of one task (1024 = 1 vCPU). floodgate runs one server thread per vCPU."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Memory of one task in MiB (floodgate itself needs a few tens of MB)."
  type        = number
  default     = 2048
}

variable "desired_count" {
  description = "Tasks when the service is created; autoscaling moves it between min_count and max_count afterwards."
  type        = number
  default     = 2
}

variable "min_count" {
  description = "Fewest tasks. Also floodgate's local_fallback.instances: with on_store_error = local, each task enforces limit / min_count while Redis is unreachable."
  type        = number
  default     = 2

  validation {
    condition     = var.min_count >= 2
    error_message = "min_count: at least 2, so that one task can drain or fail while another serves."
  }
}

variable "max_count" {
  description = "Most tasks autoscaling may run."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation of the service that autoscaling keeps."
  type        = number
  default     = 60
}

variable "drain_delay_seconds" {
  description = "floodgate's server.drain_delay and the target group's deregistration_delay: how long a stopping task keeps serving while the ALB stops sending it requests. At least the health check's 2 x 5 s, so that an instance that turns unready is out of rotation before its listener closes."
  type        = number
  default     = 15

  validation {
    condition     = var.drain_delay_seconds >= 10 && var.drain_delay_seconds <= 60
    error_message = "drain_delay_seconds: between 10 (the ALB needs 2 failed checks 5 s apart) and 60."
  }
}

variable "drain_timeout_seconds" {
  description = "floodgate's server.drain_timeout: after the listener closes, how long requests in flight may take."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps floodgate's logs (and its access log when access_log is true)."
  type        = number
  default     = 14
}

# ---- floodgate config ---------------------------------------------------------------------------
# The module writes floodgate.yaml from these; listen, threads, store, trusted_proxies,
# local_fallback and the server timeouts follow from the resources above.

variable "store_timeout" {
  description = "floodgate's store_timeout: the longest one decision waits for Redis."
  type        = string
  default     = "20ms"
}

variable "on_store_error" {
  description = "floodgate's on_store_error when Redis cannot answer: allow, deny or local."
  type        = string
  default     = "local"

  validation {
    condition     = contains(["allow", "deny", "local"], var.on_store_error)
    error_message = "on_store_error: allow, deny or local."
  }
}

variable "access_log" {
  description = "floodgate's access_log: one JSON line per request, to CloudWatch Logs."
  type        = bool
  default     = true
}

variable "upstream" {
  description = "Optional: the API floodgate proxies allowed requests to (url = \"http://host:port\"), with the CIDR blocks and port the tasks may reach it on. Without it, floodgate answers /api/... from its demo resource."
  type = object({
    url         = string
    port        = number
    cidr_blocks = list(string)
  })
  default = null
}

variable "identity" {
  description = "floodgate's identity list (design §2.4), as Terraform values."
  type        = any
  default = [
    { header = "X-API-Key" },
    { ip = {} },
  ]
}

variable "policies" {
  description = "floodgate's policies, as Terraform values (fields as in examples/floodgate.yaml)."
  type        = any
  default = [
    {
      name      = "per-minute"
      match     = { path_prefix = "/api/" }
      algorithm = "token_bucket"
      limit     = 100
      period    = "60s"
    },
    {
      name   = "per-second"
      match  = { path_prefix = "/api/" }
      limit  = 10
      period = "1s"
    },
  ]
}

# ---- ElastiCache for Redis, cluster mode enabled ------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type of every shard's primary and replicas."
  type        = string
  default     = "cache.t4g.medium"
}

variable "redis_engine_version" {
  description = "Redis version: 7 or later, as floodgate loads a Redis function (FUNCTION LOAD, FCALL)."
  type        = string
  default     = "7.1"

  validation {
    condition     = tonumber(split(".", var.redis_engine_version)[0]) >= 7
    error_message = "redis_engine_version: 7.0 or later (floodgate uses Redis functions)."
  }
}

variable "redis_parameter_group_name" {
  description = "A parameter group of the redis7 family with cluster-enabled = yes."
  type        = string
  default     = "default.redis7.cluster.on"
}

variable "redis_shards" {
  description = "Node groups (shards) of the cluster: each holds a share of the 16384 slots."
  type        = number
  default     = 3
}

variable "redis_replicas_per_shard" {
  description = "Replicas of each shard's primary, in other availability zones: one of them is promoted when the primary fails."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas_per_shard >= 1 && var.redis_replicas_per_shard <= 5
    error_message = "redis_replicas_per_shard: 1 to 5 (without a replica a shard's failure loses its slots until it is replaced)."
  }
}

variable "redis_transit_encryption" {
  description = "TLS between floodgate and every ElastiCache node (ElastiCache in-transit encryption; floodgate's store URL becomes rediss-cluster://). Costs Redis CPU per connection and request; the security group (tasks only) protects the plain-TCP default. Changing it on an existing replication group replaces the group with older AWS providers: its rate-limit state is lost (it expires within a period anyway)."
  type        = bool
  default     = false
}

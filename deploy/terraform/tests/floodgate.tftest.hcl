# Offline checks of the module: `terraform init -backend=false && terraform test` (from
# deploy/terraform). The AWS provider is mocked, so nothing is created and no credentials are
# needed; what is checked is the wiring: health check, drain times, the chain of security
# groups, ElastiCache's shape and the floodgate.yaml the tasks get.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }

  mock_data "aws_subnet" {
    defaults = {
      cidr_block = "10.0.0.0/24"
    }
  }

  # Values the provider checks the shape of (ARNs), where the mock's random strings would not do.
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/floodgate-ecs-execution"
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/floodgate/0123456789abcdef"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/floodgate/0123456789abcdef"
    }
  }

  mock_resource "aws_ecs_cluster" {
    defaults = {
      arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/floodgate"
      id  = "arn:aws:ecs:eu-west-1:123456789012:cluster/floodgate"
    }
  }

  mock_resource "aws_ecs_task_definition" {
    defaults = {
      arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/floodgate:1"
    }
  }

  mock_resource "aws_elasticache_replication_group" {
    defaults = {
      configuration_endpoint_address = "clustercfg.floodgate-redis.abc123.euw1.cache.amazonaws.com"
    }
  }
}

variables {
  vpc_id             = "vpc-0123456789abcdef0"
  public_subnet_ids  = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
  private_subnet_ids = ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"]
  certificate_arn    = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  container_image    = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/floodgate:0.1.0"
}

run "defaults" {
  command = apply

  assert {
    condition     = aws_lb_target_group.floodgate.health_check[0].path == "/readyz" && aws_lb_target_group.floodgate.health_check[0].matcher == "200"
    error_message = "the target group must check GET /readyz for 200"
  }

  assert {
    condition     = aws_lb_target_group.floodgate.health_check[0].interval == 5 && aws_lb_target_group.floodgate.health_check[0].unhealthy_threshold == 2
    error_message = "the health check must take a task out within 10 s"
  }

  assert {
    condition     = tonumber(aws_lb_target_group.floodgate.deregistration_delay) == var.drain_delay_seconds
    error_message = "deregistration_delay must equal floodgate's drain_delay"
  }

  assert {
    condition     = aws_lb_listener.http.default_action[0].type == "redirect" && aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "HTTP must redirect to HTTPS"
  }

  assert {
    condition     = aws_lb_listener.https.certificate_arn == var.certificate_arn
    error_message = "the HTTPS listener must use the given certificate"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.tasks_from_alb.referenced_security_group_id == aws_security_group.alb.id
    error_message = "the tasks must admit the ALB's security group"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.redis_from_tasks.referenced_security_group_id == aws_security_group.tasks.id
    error_message = "Redis must admit the tasks' security group"
  }

  assert {
    condition     = aws_elasticache_replication_group.redis.num_node_groups == 3 && aws_elasticache_replication_group.redis.replicas_per_node_group == 1
    error_message = "ElastiCache: 3 shards of a primary and a replica by default"
  }

  assert {
    condition     = aws_elasticache_replication_group.redis.transit_encryption_enabled == false
    error_message = "in-transit encryption is off by default (redis_transit_encryption)"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.floodgate.container_definitions)[0].stopTimeout == 50
    error_message = "stopTimeout must be drain_delay + drain_timeout + 5"
  }

  assert {
    condition     = yamldecode(output.floodgate_config).store == "redis-cluster://clustercfg.floodgate-redis.abc123.euw1.cache.amazonaws.com:6379"
    error_message = "the store must be the cluster's configuration endpoint"
  }

  assert {
    condition     = yamldecode(output.floodgate_config).trusted_proxies == ["10.0.0.0/24", "10.0.0.0/24"]
    error_message = "trusted_proxies must be the ALB subnets' CIDR blocks"
  }

  assert {
    condition     = yamldecode(output.floodgate_config).server.drain_delay == "15s" && yamldecode(output.floodgate_config).server.idle_timeout == "75s"
    error_message = "drain_delay must follow drain_delay_seconds, idle_timeout the ALB's plus 15 s"
  }
}

run "explicit_trusted_proxies" {
  command = plan

  variables {
    trusted_proxy_cidrs = ["10.0.0.0/24", "10.0.1.0/24"]
  }

  assert {
    condition     = length(data.aws_subnet.alb) == 0
    error_message = "given CIDRs, the subnets are not looked up"
  }
}

run "transit_encryption" {
  command = apply

  variables {
    redis_transit_encryption = true
  }

  assert {
    condition     = aws_elasticache_replication_group.redis.transit_encryption_enabled == true
    error_message = "redis_transit_encryption must turn on ElastiCache's in-transit encryption"
  }

  assert {
    condition     = yamldecode(output.floodgate_config).store == "rediss-cluster://clustercfg.floodgate-redis.abc123.euw1.cache.amazonaws.com:6379"
    error_message = "with transit encryption the store must be rediss-cluster:// (TLS to every node)"
  }
}

run "stop_timeout_over_fargate_limit" {
  command = plan

  variables {
    drain_delay_seconds   = 60
    drain_timeout_seconds = 60
  }

  expect_failures = [aws_ecs_task_definition.floodgate]
}

FROM registry.something.io/images/base/ubuntu_2204:release

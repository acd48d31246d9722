FROM randomrepo/python:3.6

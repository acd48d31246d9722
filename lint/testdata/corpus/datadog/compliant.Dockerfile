FROM python:3.6

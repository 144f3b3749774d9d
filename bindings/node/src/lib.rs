//! Node.js bindings of meshcache: conversion and error mapping only.

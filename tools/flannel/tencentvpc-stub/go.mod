// Stand-in for github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc, which the Go module
// proxy does not serve (list: 404, v1.3.188 zip: 403). flanneld links it only for its "tencent-vpc"
// backend; the lab and the bench use the vxlan backend. Every call of this stand-in fails with an
// error that says so, so a flanneld from this module refuses tencent-vpc instead of misbehaving.
module github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc

go 1.21
